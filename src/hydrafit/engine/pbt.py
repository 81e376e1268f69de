"""Population-based training on a live population (hparams_search=pbt; the policy:
hydrafit.sweeps.pbt): after every perturbation_interval epochs, each member of the bottom
quantile takes a top member's weights and optimizer state (Adam's moments, SGD's momentum
buffer) by an indexed copy between the stacked tensors, and trains on with explored values.

No checkpoint or process moves: a copy is a few tensor writes between two optimizer steps, at an
epoch boundary, so a signal (handled at epoch ends, engine.callbacks.GracefulStop) or a kill
never sees a half-copied member. The members share one step count (they step together), so
Adam's bias corrections need no copy.
"""
from __future__ import annotations

import logging
import math

import torch
from omegaconf import OmegaConf

from hydrafit.report.lineage import segment_values
from hydrafit.sweeps.pbt import KEYS

log = logging.getLogger(__name__)


def copy_member(population, source: int, k: int, values: dict) -> None:
    """Exploit and explore: member k of `population` (engine.population.Population) takes member
    `source`'s weights and optimizer state, and trains on with hyperparameters `values` ({lr: ..}).
    A diverged member that copies a live one lives again."""
    g = population.stack_of(k)
    a = population.spans[g][0]
    with torch.no_grad():
        for tensors in population.stack_tensors()[g]:
            for t in tensors.values():
                t[k - a] = t[source - a]
    optimizer = population.optimizers().optimizer
    optimizer.copy_member(source, k)
    optimizer.set_member(k, values)
    if k in population.diverged:
        del population.diverged[k]
        population.kept.pop(k, None)
        population.active[k] = True


class Exploitation:
    """A PBT policy applied to one population: each member's current values and what was done.
    `values[k]`: member k's hyperparameters ({config key: value}) now; `initial`: at the start;
    `rows`: one per exploit (epoch, member, copied_from, old and new values, scores)."""

    resumable = True  # the population is saved at each interval (engine.population.fit)

    def __init__(self, policy, cfgs: list):
        self.policy, self.metric = policy, policy.metric  # metric: what ranks the members
        self.initial = [{key: OmegaConf.select(cfg, key) for key in policy.space} for cfg in cfgs]
        self.values = [dict(v) for v in self.initial]
        self.rows: list[dict] = []
        self.final_scores: list[float] = []  # each member's metric when the fit ended

    def after_epoch(self, population, epoch: int) -> bool:
        """Exploit and explore if `epoch` epochs end an interval (policy.due); whether they did."""
        if not self.policy.due(epoch, population.trainer.max_epochs):
            return False
        scores = [float(s) for s in population.metric(self.metric).cpu()]
        pairs = self.policy.pairs(scores, epoch)
        for member, source in pairs:
            new = self.policy.explore(self.values[source], epoch, member)
            copy_member(population, source, member, {KEYS[key]: value for key, value in new.items()})
            self.rows.append({"epoch": epoch, "member": member, "copied_from": source,
                              **{f"old {key}": self.values[member][key] for key in new},
                              **{f"new {key}": value for key, value in new.items()},
                              "score": scores[member], "copied_score": scores[source]})
            self.values[member] = new
        log.info("PBT after epoch %d: %d members copied the top ones; best %s = %.6g", epoch, len(pairs),
                 self.policy.metric,
                 min((s for s in scores if math.isfinite(s)), default=math.nan))
        return True

    def state(self) -> dict:
        return {"initial": self.initial, "values": self.values, "rows": self.rows,
                "final_scores": self.final_scores, "metric": self.policy.metric}

    def load(self, state: dict) -> None:
        self.initial, self.values, self.rows = state["initial"], state["values"], state["rows"]


class Replay:
    """pbt_replay=: a PBT member's lineage (hydrafit.report.lineage) applied to a population that
    trains it: after the epochs each segment starts at, every member takes that segment's
    values, as the PBT run's population set them (Exploitation.after_epoch, same place, same
    arithmetic). state() is the lineage as one member's values (report.member logs them)."""

    resumable = False
    metric = None  # nothing is ranked

    def __init__(self, lineage: list[dict]):
        self.lineage = lineage

    def after_epoch(self, population, epoch: int) -> bool:
        for segment in self.lineage[1:]:
            if segment["from_epoch"] == epoch:
                values = {KEYS[key]: value for key, value in segment_values(segment).items()}
                for k in range(len(population.seeds)):
                    population.optimizers().optimizer.set_member(k, values)
        return False

    def state(self) -> dict:
        rows = [{"epoch": s["from_epoch"], "member": 0, **{f"new {k}": v for k, v in segment_values(s).items()}}
                for s in self.lineage[1:]]
        return {"initial": [segment_values(self.lineage[0])], "rows": rows, "numbers": None}
