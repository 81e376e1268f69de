"""The config nodes of hydrafit's Hydra plugins (hydra/sweeper=resumable, hydra/sweeper=optuna,
hydra/sweeper=pbt, hydra/launcher=vectorized): the keys of hydra.sweeper / hydra.launcher and their defaults, stored in
Hydra's ConfigStore when this module is imported (hydrafit.config.compose, the plugin modules).
The plugin classes are in hydra_plugins/hydrafit_sweeper (Hydra instantiates plugins only from
there), their work in hydrafit.sweeps and hydrafit.launch.
"""
# No `from __future__ import annotations`: Hydra's ConfigStore reads these dataclasses' annotations
# as types.
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class ResumableSweeperConf:
    _target_: str = "hydra_plugins.hydrafit_sweeper.resumable_sweeper.ResumableSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    n_trials: Optional[int] = None  # resume_sweep= of an Optuna search: its new number of trials


ConfigStore.instance().store(group="hydra/sweeper", name="resumable", node=ResumableSweeperConf,
                             provider="hydrafit")


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
    # A running trial's heartbeat, every heartbeat_interval s (null: none); a trial unheard for
    # grace_period s (null: twice the interval) is failed and asked again, up to max_retry times in a
    # row (null: no limit). Why these values: conf/hparams_search/optuna.yaml.
    heartbeat_interval: Optional[int] = 60
    grace_period: Optional[int] = 120
    max_retry: Optional[int] = 3


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf,
                             provider="hydrafit")


@dataclass
class PBTSweeperConf:
    _target_: str = "hydra_plugins.hydrafit_sweeper.pbt_sweeper.PBTSweeper"
    population: int = 16              # members, trained as one population
    perturbation_interval: int = 25   # epochs between two exploit/explore steps
    quantile_fraction: float = 0.25   # the bottom this fraction copies the top this fraction
    resample_probability: float = 0.25  # an explored value is drawn again, else perturbed
    perturbation_factors: List[float] = field(default_factory=lambda: [1.2, 0.8])
    metric: str = "truth/rmse"        # what ranks the members (lower is better)
    seed: Optional[int] = None        # the draws (starting values, pairs, explorations)
    params: Optional[Dict[str, str]] = None  # the search space, in Hydra's sweep grammar


ConfigStore.instance().store(group="hydra/sweeper", name="pbt", node=PBTSweeperConf, provider="hydrafit")


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
