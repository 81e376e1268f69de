"""callbacks.optuna_pruning of hparams_search=optuna: a trial's running metric reported to its
Optuna study, and the run stopped when the study's pruner says so."""
from __future__ import annotations

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig

from hydrafit.metrics import final_metrics
from hydrafit.sweeps.study import job_trial, trial


class OptunaPruning(pl.Callback):
    """In a trial of `hparams_search=optuna` with a pruner (hydra.sweeper.pruner), reports
    `metric`'s running value to the trial every `every_n_epochs` epochs and stops the run when
    Optuna's pruner says so: metrics.json then says `status: pruned` (hydrafit.report.status reads
    `pruned`) (final metrics, fit.png and
    last.ckpt are written as for a completed run). Elsewhere it does nothing.
    A metric of metrics.json (truth/rmse, train/mse, val/mse) is computed from the model as the
    end of the run would compute it (~0.4 ms on the tutorial's data); val/loss from the model as
    its on_train_epoch_end computes it (models.Regressor.validation_loss: Lightning calls this
    callback's hook first, when callback_metrics still holds the previous epoch's); train/loss is
    the epoch's mean as training_step keeps it in callback_metrics. A report is a write to the
    study (~12 ms with SQLite), hence `every_n_epochs`, not every epoch. Not optuna-integration's
    PyTorchLightningPruningCallback: that one is a `lightning` (not `pytorch_lightning`) callback
    and reports on validation only."""

    def __init__(self, metric: str, every_n_epochs: int = 10):
        self.metric, self.every_n_epochs = metric, every_n_epochs
        self.pruned: str | None = None  # why, once pruned
        # Read here, in the job's process: DDP-spawned ranks have no HydraConfig.
        self._where = job_trial(HydraConfig.get()) if HydraConfig.initialized() else None
        self._trial = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self._where is None or epoch % self.every_n_epochs:
            return
        why = None
        if trainer.is_global_zero:
            self._trial = self._trial or trial(*self._where)
            value = self._value(trainer, pl_module)
            self._trial.report(value, epoch)
            if self._trial.should_prune():
                why = f"pruned by Optuna at epoch {epoch}: {self.metric} = {value:.6g}"
        self.pruned = trainer.strategy.broadcast(why)  # every DDP rank stops together
        trainer.should_stop = trainer.should_stop or self.pruned is not None

    def _value(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        if self.metric == "val/loss" and (value := pl_module.validation_loss()) is not None:
            return float(value)
        if self.metric in trainer.callback_metrics:
            return float(trainer.callback_metrics[self.metric])
        return final_metrics(pl_module.net, trainer.datamodule)[self.metric]


class MemberPruning:
    """OptunaPruning for the members of a population (hydrafit.engine.population.Population.prune):
    each member's metric reported to its own trial, and the members whose trial Optuna prunes
    named, with the same words a pruned single run's metrics.json gives."""

    def __init__(self, metric: str, every_n_epochs: int, trials: list[tuple]):
        self.metric, self.every_n_epochs, self.trials = metric, every_n_epochs, trials
        self.live: dict[int, object] = {}  # member -> its optuna.Trial, opened at its first report

    def reordered(self, order: list[int]) -> MemberPruning:
        """The same trials for the members in `order` (member i is this one's order[i])."""
        return MemberPruning(self.metric, self.every_n_epochs, [self.trials[k] for k in order])

    def judge(self, epoch: int, values: dict[int, float]) -> dict[int, str]:
        """Report each member's value at `epoch`; {member: why} for those to prune."""
        pruned = {}
        for k, value in values.items():
            self.live[k] = self.live.get(k) or trial(*self.trials[k])
            self.live[k].report(value, epoch)
            if self.live[k].should_prune():
                pruned[k] = f"pruned by Optuna at epoch {epoch}: {self.metric} = {value:.6g}"
        return pruned


def member_pruning(members: list, hydra_configs: list) -> MemberPruning | None:
    """The pruning of a population whose members are trials of an Optuna search with a pruner
    (their callbacks.optuna_pruning), None otherwise. `hydra_configs`: each member's `hydra` node."""
    trials = [job_trial(h) for h in hydra_configs]
    callbacks = members[0].view.callbacks
    if callbacks.pruning_metric is None or any(t is None for t in trials):
        return None
    return MemberPruning(callbacks.pruning_metric, callbacks.pruning_every, trials)
