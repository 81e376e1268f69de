"""How a fit ended, in metrics.json's words: completed, diverged, pruned or interrupted.

Read from the Trainer's state and its callbacks by what they say, not by their class: the
callbacks that stop a fit live above this module (hydrafit.engine.callbacks.GracefulStop,
hydrafit.sweeps.pruning.OptunaPruning), and both the writers here and the engine read this.
"""
from __future__ import annotations

import math


def run_status(trainer) -> tuple[str, str | None]:
    """How fit ended: ('completed', None), ('diverged', why), ('pruned', why) or ('interrupted', why)."""
    loss = trainer.callback_metrics.get("train/loss")
    if loss is not None and not math.isfinite(float(loss)):
        lr = trainer.optimizers[0].defaults.get("lr") if trainer.optimizers else None
        return "diverged", diverged_message(float(loss), trainer.current_epoch, lr)
    # a callback that stopped the fit on purpose says why in `pruned` (hydrafit.sweeps.pruning)
    pruning = next((c for c in trainer.callbacks if getattr(c, "pruned", None)), None)
    if pruning:
        return "pruned", pruning.pruned
    # a signal stopped it: GracefulStop records which in `received` and sets `stopped`
    stopper = next((c for c in trainer.callbacks if getattr(c, "stopped", False) is True and hasattr(c, "received")), None)
    if stopper:
        return "interrupted", interrupted_message(stopper.received, trainer.current_epoch, trainer.default_root_dir)
    return "completed", None


def diverged_message(loss: float, epoch: int, lr: float | None) -> str:
    hint = f"; try a lower learning rate, e.g. optimizer.lr={lr / 10:g}" if lr else ""
    return f"train/loss became {loss} at epoch {epoch}{hint}"


def interrupted_message(signal_name: str, epoch: int, run_dir) -> str:
    return f"{signal_name} received: stopped after epoch {epoch}; continue with: hydrafit-train resume={run_dir}"


class RunStopped(RuntimeError):
    """Fit ended early (diverged or interrupted); metrics.json already records why."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status

    def __reduce__(self):  # pickled back from joblib workers with its status (an Optuna sweeper
        return RunStopped, (self.status, str(self))  # tells pruned from failed by it)
