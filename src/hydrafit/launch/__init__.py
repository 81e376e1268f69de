"""hydra/launcher=vectorized: a sweep's jobs grouped into populations (grouping), each trained in
one fit (hydrafit.engine.population), every job still an ordinary run directory (vectorized).
hydra/launcher=slurm and slurm_vectorized: the jobs, or chunks of them as populations, as SLURM
jobs (cluster), submitted and watched until each has ended (slurm)."""
