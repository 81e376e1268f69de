"""hydra/sweeper=optuna, the Hydra plugin: its config (the keys of hydra.sweeper) and a class Hydra
accepts (Hydra instantiates plugins only from the hydra_plugins namespace). The work is
hydrafit.sweeps.optuna_sweeper's.
"""
# No `from __future__ import annotations`: Hydra's plugin scan executes this module before it is
# in sys.modules, where @dataclass would then look its string annotations up and fail.
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore

from hydrafit.sweeps import optuna_sweeper


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.hydrafit_sweeper.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False   # sampler and pruner are built by the sweeper (a resume reseeds)
    n_trials: int = 20          # completed + pruned trials the study should hold in the end
    n_jobs: int = 1             # trials asked at a time, launched as one batch
    direction: str = "minimize"
    study_name: str = "hydrafit"
    storage: Optional[str] = None  # an SQLAlchemy URL; None: sqlite:///<sweep dir>/optuna.db
    join: bool = False          # join the study if it exists (several workers, one search)
    pruner: Any = "none"        # none | median | hyperband | {_target_: optuna.pruners.X, ...}
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    params: Optional[Dict[str, str]] = None  # the search space, in Hydra's sweep grammar


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf,
                             provider="hydrafit")


class OptunaSweeper(optuna_sweeper.OptunaSweeper):
    """hydrafit.sweeps.optuna_sweeper.OptunaSweeper, where Hydra looks for it."""
