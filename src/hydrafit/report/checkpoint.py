"""checkpoints/last.ckpt and best.ckpt: Lightning's ModelCheckpoint for a single run (Checkpoint),
and the same files for each member of a population (save_member_checkpoints), which
hydrafit-eval, hydrafit.load and resume= read alike."""
from __future__ import annotations

import functools
import io
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from hydrafit.compat.lightning import due_this_epoch, saves_on_batches
from hydrafit.models import stepped
from hydrafit.report.status import run_status
from hydrafit.rundir.files import write_atomic


class Checkpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus a final `last.ckpt` when training ends between two
    periodic saves (Lightning's own on_train_end saves it only if nothing was saved at all).
    Periodic saves (`every_n_epochs`) exist for resuming after a crash; saving every epoch
    would cost more than the training step of a small model."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()  # what it saves, it saves whole

    @functools.cached_property
    def state_key(self) -> str:
        # Lightning formats this name for every hook it calls, ~9 an epoch (2% of a seed epoch);
        # what it is made of is fixed once the callback is built.
        return super().state_key

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if saves_on_batches(self):
            super().on_train_batch_end(trainer, pl_module, *args)  # else it never saves: ~10 us a step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning deep-copies callback_metrics every epoch before deciding not to save
        # (~0.1 ms, a quarter of a seed step): decide first. The conditions are Lightning's own.
        if due_this_epoch(self, trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if run_status(trainer)[0] == "diverged":
            return  # keep the last finite checkpoint: resuming from NaN weights is useless
        super().on_train_end(trainer, pl_module)
        last = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        if self.save_last and not trainer.fast_dev_run and self.last_model_path == str(last):
            trainer.save_checkpoint(last, weights_only=False)  # atomic: AtomicCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint files, written as every file of a run is (write_atomic: a temp file
    beside the file, then a rename). Lightning's own writes its temp file in the system's temp
    directory, then copies it over the checkpoint when that is on another filesystem: on a full
    disk the copy leaves an empty last.ckpt where the complete one was."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)  # its TypeError
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(Path(path), buffer.getvalue())


def save_checkpoint(member, outcome, k: int, dirpath: Path) -> None:
    """checkpoints/last.ckpt and best.ckpt of member k, each a single run's checkpoint (its
    Regressor's weights and hyperparameters, its torch.optim optimizer's and lr scheduler's
    state, Lightning's loop progress), so that hydrafit-eval and resume= read them as any other.
    A diverged member keeps its last periodic state as last.ckpt, or none if it diverged before
    the first (as a single run)."""
    last = outcome.kept.get(k) if k in outcome.diverged else outcome.final[k]
    states = {name: state for name, state in (("best", outcome.best.get(k)), ("last", last)) if state is not None}
    if not states:
        return
    dirpath.mkdir(parents=True, exist_ok=True)
    built: dict = {}  # (optimizer, scheduler) by epochs: configure_optimizers costs ~1 ms
    for name, state in states.items():
        buffer = io.BytesIO()
        torch.save(member_checkpoint(member.module, state, built), buffer)
        write_atomic(dirpath / f"{name}.ckpt", buffer.getvalue())


def member_checkpoint(module, state: dict, built: dict) -> dict:
    """The checkpoint dict of a member's `state` (template, params, optimizer state): its
    Regressor's keys and hyperparameters, its optimizer and lr scheduler (its own
    configure_optimizers, the scheduler stepped to the state's epoch) in torch's formats.
    `built`: the optimizers and schedulers made so far for this member, by epoch."""
    epochs = state["template"]["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"]
    key = epochs if module.hparams.scheduler else 0  # without a schedule every epoch's is the same
    if key not in built:
        built[key] = stepped(module, epochs)
    optimizer, scheduler = built[key]
    optimizer.load_state_dict({"state": state["optimizer"], "param_groups": optimizer.state_dict()["param_groups"]})
    prefix = "net.net." if module.hparams.scaling else "net."  # models.Standardized wraps the net
    return {**state["template"], "state_dict": {prefix + n: v for n, v in state["params"].items()},
            "optimizer_states": [optimizer.state_dict()], "hparams_name": "kwargs",
            "lr_schedulers": [scheduler.state_dict()] if scheduler is not None else [],
            "hyper_parameters": dict(module.hparams)}

