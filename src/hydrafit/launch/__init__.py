"""hydra/launcher=vectorized: a sweep's jobs grouped into populations (grouping), each trained in
one fit (hydrafit.engine.population), every job still an ordinary run directory (vectorized)."""
