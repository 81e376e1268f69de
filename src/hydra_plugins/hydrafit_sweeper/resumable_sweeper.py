"""hydra/sweeper=resumable, the Hydra plugin: its config (the keys of hydra.sweeper) and a class Hydra
accepts (Hydra instantiates plugins only from the hydra_plugins namespace). The work is
hydrafit.sweeps.resumable's.
"""
# No `from __future__ import annotations`: Hydra's plugin scan executes this module before it is
# in sys.modules, where @dataclass would then look its string annotations up and fail.
from dataclasses import dataclass
from typing import Dict, Optional

from hydra.core.config_store import ConfigStore

from hydrafit.sweeps import resumable


@dataclass
class ResumableSweeperConf:
    _target_: str = "hydra_plugins.hydrafit_sweeper.resumable_sweeper.ResumableSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    n_trials: Optional[int] = None  # resume_sweep= of an Optuna search: its new number of trials


ConfigStore.instance().store(group="hydra/sweeper", name="resumable", node=ResumableSweeperConf,
                             provider="hydrafit")


class ResumableSweeper(resumable.ResumableSweeper):
    """hydrafit.sweeps.resumable.ResumableSweeper, where Hydra looks for it."""
