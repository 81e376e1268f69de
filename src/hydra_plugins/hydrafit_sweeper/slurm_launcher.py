"""hydra/launcher=slurm and hydra/launcher=slurm_vectorized: the plugin classes, where Hydra
accepts them (it instantiates plugins only from the hydra_plugins namespace). Their config nodes
are _slurm_nodes', their work hydrafit.launch.cluster's. Without hydra-submitit-launcher (the
sweeps extra) this module defines neither: an ImportError would make Hydra's plugin scan warn in
every command.
"""
try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
    from hydra_plugins.hydrafit_sweeper import _slurm_nodes  # noqa: F401  the config nodes
except ImportError:  # pip install "hydrafit[sweeps]"
    SubmititSlurmLauncher = None

if SubmititSlurmLauncher is not None:
    from hydrafit.launch import cluster

    class SlurmLauncher(cluster.Watched, SubmititSlurmLauncher):
        """hydra-submitit-launcher's SlurmLauncher, its jobs watched (hydrafit.launch.cluster.Watched)."""

    class SlurmVectorizedLauncher(cluster.SlurmVectorizedLauncher):
        """hydrafit.launch.cluster.SlurmVectorizedLauncher, where Hydra looks for it."""
