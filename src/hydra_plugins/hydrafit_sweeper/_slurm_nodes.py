"""The config nodes of hydra/launcher=slurm and slurm_vectorized (hydra_plugins.hydrafit_sweeper.
slurm_launcher): hydra-submitit-launcher's submitit_slurm keys (sbatch's) and hydrafit's. Here, not
in hydrafit.config.plugins, because they extend that plugin's node (hydrafit never imports plugin
modules); in a module whose name starts with `_`, because Hydra's plugin scan re-executes every
other module of hydra_plugins (at each start and in each SLURM job, Singleton.set_state): a
re-executed dataclass is another class, and a config typed with the old one no longer pickles
(hydra/launcher=vectorized pickles each composition). conf/hydra/launcher/slurm*.yaml set the values.
"""
from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf


@dataclass
class SlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.hydrafit_sweeper.slurm_launcher.SlurmLauncher"
    # Minutes the sweep's jobs may all wait in the queue, none of them running, before they are
    # cancelled, each reported with squeue's reason (null: as long as the queue takes).
    pending_timeout_min: Optional[float] = None


@dataclass
class SlurmVectorizedConf(SlurmConf):
    _target_: str = "hydra_plugins.hydrafit_sweeper.slurm_launcher.SlurmVectorizedLauncher"
    max_population: Optional[int] = None  # jobs one SLURM job trains (null: all in one)
    processes: Optional[int] = None  # hydra/launcher=vectorized's; null: one a CPU the job has


ConfigStore.instance().store(group="hydra/launcher/schema", name="hydrafit_slurm", node=SlurmConf, provider="hydrafit")
ConfigStore.instance().store(group="hydra/launcher/schema", name="hydrafit_slurm_vectorized", node=SlurmVectorizedConf,
                             provider="hydrafit")
