"""What a population's fit leaves (Outcome, for its members' run directories) and what a fit
saved mid-way continues with (saved_state / restore_state: a PBT run's population checkpoint,
besides the weights and optimizer Lightning saves itself)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hydrafit.config.errors import ConfigError


@dataclass
class Outcome:
    """What a population's fit leaves for its members' run directories. A member's state is
    {"template": Lightning's checkpoint of the fit, "params": its own tensors (its own shape),
    "optimizer": its torch.optim state}: what its checkpoint is made of."""

    final: dict             # member -> its state when it stopped training (the fit's end, or its own)
    losses: torch.Tensor    # [epochs, members] train/loss of each epoch
    val_losses: torch.Tensor | None  # [epochs, members] val/loss, None without a validation split
    diverged: dict          # member -> (epoch, loss) where its loss stopped being finite
    finished: dict          # member -> the epoch it finished at, before the fit's end (its max_epochs, or pruned)
    pruned: dict            # member -> why Optuna's pruner stopped it
    kept: dict              # diverged member -> its last finite checkpoint (or absent)
    best: dict              # member -> its state at the periodic save of lowest train/loss (best.ckpt)
    epochs: int
    steps_per_epoch: int
    seconds: float
    interrupted: str | None = None  # the signal that stopped the fit
    started: float | None = None    # when the fit started, time.time(): the members' MLflow runs start then
    pbt: dict | None = None  # hparams_search=pbt: engine.pbt.Exploitation.state() (values, exploits)

    def epochs_of(self, k: int) -> int:
        """The epochs member k trained: up to where it diverged or finished, or all of the fit's."""
        return self.diverged[k][0] if k in self.diverged else self.finished.get(k, self.epochs)


def saved_state(population) -> dict:
    """The epochs' losses, the members' ends, their best states and the lineage."""
    stacked = lambda rows: torch.stack(rows).cpu() if rows else None
    return {"losses": stacked(population.losses), "val_losses": stacked(population.val_losses),
            "diverged": population.diverged, "kept": population.kept, "best": population.best,
            "best_loss": population.best_loss, "active": population.active.cpu(),
            "pbt": population.pbt and population.pbt.state()}


def restore_state(population, saved: dict) -> None:
    if len(saved["active"]) != len(population.seeds):
        raise ConfigError(f"resume_sweep: the saved population has {len(saved['active'])} members, "
                          f"this one {len(population.seeds)}")
    population.losses = list(saved["losses"]) if saved["losses"] is not None else []
    population.val_losses = list(saved["val_losses"]) if saved["val_losses"] is not None else []
    population.diverged, population.kept, population.best = saved["diverged"], saved["kept"], saved["best"]
    population.best_loss = saved["best_loss"]
    population.active.copy_(saved["active"])
    if population.pbt is not None:
        population.pbt.load(saved["pbt"])
