"""hydra/launcher=vectorized, the Hydra plugin: its config (the keys of hydra.launcher) and a class Hydra
accepts (Hydra instantiates plugins only from the hydra_plugins namespace). The work is
hydrafit.launch.vectorized's.
"""
# No `from __future__ import annotations`: Hydra's plugin scan executes this module before it is
# in sys.modules, where @dataclass would then look its string annotations up and fail.
from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore

from hydrafit.launch import vectorized


@dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.hydrafit_sweeper.vectorized_launcher.VectorizedLauncher"
    # Most members a population holds; larger groups are trained in chunks of this many
    # (null: no limit). Memory grows with it: a member of the default experiment is a few kB.
    max_population: Optional[int] = None
    # Processes that prepare the jobs (compose, validate, build each member) and write the members'
    # run directories once a population is trained, each taking the next job (Linux; null: one a
    # core, at most one per 16 jobs, but one a core to compose while torch imports; 1: this
    # process alone).
    processes: Optional[int] = None


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf,
                             provider="hydrafit")


class VectorizedLauncher(vectorized.VectorizedLauncher):
    """hydrafit.launch.vectorized.VectorizedLauncher, where Hydra looks for it."""
