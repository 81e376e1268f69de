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

from omegaconf import OmegaConf

from hydrafit.config.errors import refuse
from hydrafit.sweeps.pbt import KEYS

log = logging.getLogger(__name__)

# What each optimizer a population trains lets a member change mid-fit (engine.memberwise).
CHANGEABLE = {"adam": ("lr", "weight_decay", "eps"), "adamw": ("lr", "weight_decay", "eps"),
              "sgd": ("lr", "weight_decay", "momentum")}


class Exploitation:
    """A PBT policy applied to one population: each member's current values and what was done.
    `values[k]`: member k's hyperparameters ({config key: value}) now; `initial`: at the start;
    `rows`: one per exploit (epoch, member, copied_from, old and new values, scores)."""

    def __init__(self, policy, cfgs: list, kind: str):
        for key in policy.space:
            if KEYS[key] not in CHANGEABLE[kind]:
                refuse(f"hydra.sweeper.params: the {kind} optimizer has no '{key}' a member can change; it "
                       f"takes {', '.join('optimizer.' + a for a in CHANGEABLE[kind])}")
        self.policy = policy
        self.initial = [{key: OmegaConf.select(cfg, key) for key in policy.space} for cfg in cfgs]
        self.values = [dict(v) for v in self.initial]
        self.rows: list[dict] = []
        self.final_scores: list[float] = []  # each member's metric when the fit ended

    def after_epoch(self, population, epoch: int) -> None:
        """Exploit and explore if `epoch` epochs end an interval (policy.due)."""
        if not self.policy.due(epoch, population.trainer.max_epochs):
            return
        scores = [float(s) for s in population.metric(self.policy.metric).cpu()]
        for member, source in self.policy.pairs(scores, epoch):
            new = self.policy.explore(self.values[source], epoch, member)
            population.copy_member(source, member, {KEYS[key]: value for key, value in new.items()})
            self.rows.append({"epoch": epoch, "member": member, "copied_from": source,
                              **{f"old {key}": self.values[member][key] for key in new},
                              **{f"new {key}": value for key, value in new.items()},
                              "score": scores[member], "copied_score": scores[source]})
            self.values[member] = new
        log.info("PBT after epoch %d: %d members copied the top ones; best %s = %.6g", epoch,
                 len(self.policy.pairs(scores, epoch)), self.policy.metric,
                 min((s for s in scores if math.isfinite(s)), default=math.nan))

    def state(self) -> dict:
        return {"initial": self.initial, "values": self.values, "rows": self.rows,
                "final_scores": self.final_scores, "metric": self.policy.metric}

    def load(self, state: dict) -> None:
        self.initial, self.values, self.rows = state["initial"], state["values"], state["rows"]
