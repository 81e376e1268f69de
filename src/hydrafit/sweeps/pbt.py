"""hydra/sweeper=pbt (hparams_search=pbt): population-based training (Jaderberg et al. 2017,
arXiv 1711.09846) inside one vectorised fit.

    hydrafit-train -m hparams_search=pbt
    hydrafit-train -m hparams_search=pbt hydra.sweeper.population=32 hydra.sweeper.perturbation_interval=10
    hydrafit-train -m resume_sweep=outputs/multiruns/<date>_<time>     # after Ctrl-C or a kill
    hydrafit-train pbt_replay=outputs/multiruns/<date>_<time>/7       # one member's run, replayed

The sweeper draws each member's starting hyperparameters from hydra.sweeper.params (seeded by
hydra.sweeper.seed) and hands the population to hydra/launcher=vectorized, which trains it as one
stacked model. Every perturbation_interval epochs the population (hydrafit.engine.pbt) ranks its
members by `metric` (lower is better): each member of the bottom quantile_fraction copies the
weights and optimizer state of a member drawn from the top quantile_fraction (exploit), and its
hyperparameters become that member's, each resampled from its distribution with probability
resample_probability, else multiplied by one of perturbation_factors (explore; a choice() moves
to a neighbouring choice), then kept within the distribution's bounds.

This module holds the policy (torch-free: ranks, draws, values); the engine applies it to the
stacked state, hydrafit.report.lineage writes what it did.
"""
# No `from __future__ import annotations`: see hydrafit.sweeps.resumable.
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydrafit.config.errors import refuse
from hydrafit.sweeps.grammar import parse_sweep
from hydrafit.sweeps.records import PBT_STATE
from hydrafit.sweeps.resumable import launch_jobs
from hydrafit.sweeps.study import search_space

log = logging.getLogger(__name__)

SWEEPER = "PBTSweeper"  # the class name hydra.sweeper._target_ ends with
# What a member can change in the middle of its fit: its optimizer's per-member values
# (engine.memberwise holds them per member and reads them at every step). Not the others: the
# net's shape or activation (weights copied from another member must fit its net), the seed,
# data or batch size (members are ranked on the same data), trainer.max_epochs (one fit), the
# scheduler (PBT's perturbations are the schedule) or optimizer.betas (a pair, not a number).
KEYS = {"optimizer.lr": "lr", "optimizer.weight_decay": "weight_decay", "optimizer.eps": "eps",
        "optimizer.momentum": "momentum"}


@dataclass
class Policy:
    """The settings of a PBT run (hydra.sweeper) and the draws they make."""

    space: Dict[str, Any]           # config key -> its Optuna distribution (study.distribution)
    population: int = 16
    perturbation_interval: int = 25
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25
    perturbation_factors: tuple = (1.2, 0.8)
    metric: str = "truth/rmse"
    seed: int = 0

    def due(self, epoch: int, max_epochs: int) -> bool:
        """Whether the population exploits and explores after `epoch` epochs (not after the last)."""
        return epoch % self.perturbation_interval == 0 and epoch < max_epochs

    def rng(self, epoch: int) -> np.random.Generator:
        """The draws after `epoch` epochs: a function of the seed and the epoch alone, so a
        resumed run draws what the uninterrupted one drew."""
        return np.random.default_rng([self.seed, epoch])

    def initial(self) -> List[Dict[str, float]]:
        """Each member's starting values, drawn from the space."""
        rng = self.rng(0)
        return [{key: draw(dist, rng) for key, dist in self.space.items()} for _ in range(self.population)]

    def pairs(self, scores: List[float], epoch: int) -> List[tuple]:
        """[(member, the member it copies)] after `epoch` epochs: the bottom quantile, each with a
        member of the top drawn for it. A score that is not finite (a diverged member) ranks last."""
        n = len(scores)
        size = min(math.ceil(n * self.quantile_fraction), n // 2)
        if size == 0:
            return []
        ranked = sorted(range(n), key=lambda k: (scores[k] if math.isfinite(scores[k]) else math.inf, k))
        top, bottom = ranked[:size], sorted(ranked[n - size:])
        rng = self.rng(epoch)
        return [(k, top[int(rng.integers(size))]) for k in bottom]

    def explore(self, values: Dict[str, float], epoch: int, member: int) -> Dict[str, float]:
        """The values a member that copied `values` trains with from now on."""
        rng = np.random.default_rng([self.seed, epoch, member])
        out = {}
        for key, dist in self.space.items():
            if rng.random() < self.resample_probability:
                out[key] = draw(dist, rng)
            else:
                out[key] = perturbed(dist, values[key], self.perturbation_factors, rng)
        return out


def draw(dist, rng: np.random.Generator):
    """One value of an Optuna distribution (Float/Int: uniform, or log-uniform; Categorical)."""
    if hasattr(dist, "choices"):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    low, high = float(dist.low), float(dist.high)
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if dist.log else rng.uniform(low, high)
    return int(round(value)) if integral(dist) else float(value)


def integral(dist) -> bool:
    return type(dist).__name__ == "IntDistribution"


def perturbed(dist, value, factors, rng: np.random.Generator):
    """`value` times one of `factors`, kept within the distribution's bounds; a choice moves to a
    neighbouring one (the factor > 1: the next, else the previous)."""
    factor = float(factors[int(rng.integers(len(factors)))])
    if hasattr(dist, "choices"):
        i = list(dist.choices).index(value) if value in dist.choices else 0
        return dist.choices[min(max(i + (1 if factor > 1 else -1), 0), len(dist.choices) - 1)]
    new = min(max(float(value) * factor, float(dist.low)), float(dist.high))
    return int(round(new)) if integral(dist) else new


def check(policy: Policy) -> None:
    """Refuse in one line (exit 2) a policy PBT cannot run: the ranges of its settings, and a
    search space with keys a member cannot change mid-fit (the optimizer's own keys are checked
    where the population is built: hydrafit.engine.pbt)."""
    whole = lambda v, least: isinstance(v, int) and not isinstance(v, bool) and v >= least
    if not whole(policy.population, 2):
        refuse(f"hydra.sweeper.population must be an integer >= 2, got {policy.population!r}")
    if not whole(policy.perturbation_interval, 1):
        refuse(f"hydra.sweeper.perturbation_interval must be an integer >= 1 (epochs), "
               f"got {policy.perturbation_interval!r}")
    if not 0 < policy.quantile_fraction <= 0.5:
        refuse(f"hydra.sweeper.quantile_fraction must be in (0, 0.5], got {policy.quantile_fraction!r}")
    if not 0 <= policy.resample_probability <= 1:
        refuse(f"hydra.sweeper.resample_probability must be in [0, 1], got {policy.resample_probability!r}")
    if not policy.perturbation_factors or any(f <= 0 for f in policy.perturbation_factors):
        refuse(f"hydra.sweeper.perturbation_factors must be positive numbers, got {list(policy.perturbation_factors)}")
    if not policy.space:
        refuse("hydra.sweeper.params: PBT needs a search space, e.g. optimizer.lr: tag(log, interval(1e-4, 1))")
    for key in policy.space:
        if key not in KEYS:
            refuse(f"hydra.sweeper.params: '{key}' cannot change during a fit (a copied member's weights "
                   f"must fit its net, and members are ranked on the same data); PBT perturbs "
                   f"{', '.join(KEYS)}")


class PBTSweeper(Sweeper):
    """Draws the population's starting values and launches it as one population."""

    def __init__(self, population: int, perturbation_interval: int, quantile_fraction: float,
                 resample_probability: float, perturbation_factors: Any, metric: str,
                 seed: Optional[int] = None, params: Optional[Dict[str, str]] = None):
        plain = lambda node: OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        self.settings = dict(population=population, perturbation_interval=perturbation_interval,
                             quantile_fraction=quantile_fraction, resample_probability=resample_probability,
                             perturbation_factors=tuple(plain(perturbation_factors) or ()),
                             metric=str(metric), seed=int(seed or 0))
        self.params = plain(params) or {}
        self.resume_from: Optional[Path] = None  # set by ResumableSweeper for resume_sweep=

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def sweep(self, arguments: List[str]) -> Any:
        try:
            space, fixed = search_space(parse_sweep(arguments, self.params, self.hydra_context.config_loader))
        except ValueError as error:
            refuse(str(error))
        policy = Policy(space=space, **self.settings)
        launcher = str(self.config.hydra.launcher.get("_target_", ""))
        if not hasattr(self.launcher, "launch_numbered"):
            refuse(f"hparams_search=pbt trains its population in one fit: hydra/launcher must be vectorized "
                   f"(or slurm_vectorized), got {launcher.rsplit('.', 1)[-1]}")
        check(policy)
        state = self.sweep_dir / PBT_STATE
        if state.exists() and self.resume_from is None:
            refuse(f"hydra.sweep.dir: '{self.sweep_dir}' holds a PBT population; continue it with "
                   f"hydrafit-train -m resume_sweep={self.sweep_dir}, or choose another hydra.sweep.dir")
        log.info("PBT: %d members, %s; exploit and explore every %d epochs by %s", policy.population,
                 ", ".join(space), policy.perturbation_interval, policy.metric)
        self.launcher.pbt = policy
        jobs = {k: [*fixed, *(f"{key}={value!r}" for key, value in values.items())]
                for k, values in enumerate(policy.initial())}
        returns = [result for _, result in launch_jobs(self.launcher, jobs)]
        for result in returns:
            _ = result.return_value  # raise the first failure, as BasicSweeper does
        state.unlink(missing_ok=True)  # every member is written: nothing left to continue
        return returns
