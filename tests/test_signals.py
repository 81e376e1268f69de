"""Ctrl-C / SIGTERM at any moment: the run stops at the end of an epoch, and resuming it gives
the uninterrupted run's numbers bitwise.

Deterministic, not timed: the signal is sent from inside each hook Lightning calls around an
epoch boundary (and at each position among the callbacks for on_train_epoch_end), in-process,
so the handler runs exactly there. tests/test_robustness.py keeps the timed CLI version.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import hydrafit.engine.single as train_module
from hydrafit.config.compose import compose_job
from hydrafit.engine import signals
from hydrafit.engine.callbacks import GracefulStop
from hydrafit.engine.single import train
from hydrafit.report.status import RunStopped

# Mini-batches (4 Lightning batches of 2 steps an epoch), a validation split, a step scheduler
# and periodic checkpoints: a resumed run must get each epoch's shuffle, learning rate and
# step count right to equal the uninterrupted one.
CONFIG = ["trainer.max_epochs=8", "dataset.n_points=320", "dataset.val_fraction=0.2",
          "dataset.batch_size=32", "dataset.steps_per_batch=2", "scheduler=step",
          "scheduler.step_size=3", "callbacks.fit_plot.n_images=0",
          "callbacks.model_checkpoint.every_n_epochs=2", "~callbacks.progress_bar"]
NUMBERS = ("train/mse", "val/mse", "truth/rmse", "epochs")
EPOCH = 3  # the signal comes during epoch 3 (0-based) of 8

# (hook, position among the callbacks or None for first); on_train_epoch_end at every position,
# i.e. before and after each of FitPlot, MetricsFile, StopOnDivergence, GracefulStop, Checkpoint.
# (Validation has no hooks of its own: the model computes val/loss in its on_train_epoch_end.)
CASES = [("on_train_epoch_start", 0), ("on_train_batch_start", 0), ("on_train_batch_end", 0),
         ("on_before_optimizer_step", 0), ("on_save_checkpoint", 0)] + [
    ("on_train_epoch_end", i) for i in range(6)]


def signal_in(hook: str, signum: int) -> pl.Callback:
    """A callback that sends `signum` to this process once, from `hook`, in epoch EPOCH (at its
    last call there, so batch hooks fire mid-epoch)."""
    def send(self, trainer, *args):
        self.calls += trainer.current_epoch == EPOCH
        if trainer.current_epoch == EPOCH and self.calls == self.at and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signum)  # the handler runs right here, inside the hook
    at = {"on_train_batch_start": 2, "on_train_batch_end": 3, "on_before_optimizer_step": 5}.get(hook, 1)
    return type(f"SignalIn_{hook}", (pl.Callback,), {hook: send, "sent": False, "calls": 0, "at": at})()


def fit(run_dir: Path, extra=None, resume: bool = False) -> dict:
    """Train CONFIG in run_dir (continuing it from last.ckpt with `resume`), `extra` = (callback,
    position) inserted into the Trainer's callbacks; metrics.json afterwards."""
    cfg = compose_job(CONFIG, run_dir)
    build, signals.requested = train_module.build, None

    def build_with_extra(cfg, resume_step=None):
        datamodule, module, trainer = build(cfg, resume_step)
        if extra:
            trainer.callbacks.insert(extra[1], extra[0])
        return datamodule, module, trainer

    train_module.build = build_with_extra
    try:
        if resume:
            ckpt = run_dir / "checkpoints" / "last.ckpt"
            train(cfg, torch.load(ckpt, map_location="cpu", weights_only=True), ckpt)
        else:
            train(cfg)
    except RunStopped as stop:
        assert stop.status == "interrupted", stop
    finally:
        train_module.build = build
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    return fit(tmp_path_factory.mktemp("uninterrupted"))


# SIGTERM goes through the same handler as SIGINT: every hook with SIGINT, three with SIGTERM.
SIGNAL_CASES = [(h, p, signal.SIGINT) for h, p in CASES] + [
    (h, p, signal.SIGTERM) for h, p in CASES if (h, p) in {("on_train_epoch_start", 0),
                                                           ("on_train_batch_end", 0), ("on_train_epoch_end", 5)}]


@pytest.mark.parametrize("hook,position,signum", SIGNAL_CASES,
                         ids=[f"{h}@{p}-{signal.Signals(s).name}" for h, p, s in SIGNAL_CASES])
def test_signal_from_any_hook_stops_at_an_epoch_end_and_resume_is_bitwise(
        tmp_path, uninterrupted, hook, position, signum):
    handlers = {s: signal.getsignal(s) for s in GracefulStop.SIGNALS}
    sender = signal_in(hook, signum)
    stopped = fit(tmp_path, (sender, position))
    assert sender.sent, f"{hook} was not called in epoch {EPOCH}"
    assert stopped["status"] == "interrupted", stopped
    assert stopped["epochs"] in (EPOCH + 1, EPOCH + 2)  # this epoch's end, or the next one's
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == stopped["epochs"]
    assert ckpt["global_step"] == stopped["epochs"] * 8  # whole epochs only: 256 points / 32 a step
    assert {s: signal.getsignal(s) for s in GracefulStop.SIGNALS} == handlers  # the caller's again

    resumed = fit(tmp_path, resume=True)
    assert resumed["status"] == "completed"
    assert {k: resumed[k] for k in NUMBERS} == {k: uninterrupted[k] for k in NUMBERS}  # bitwise


def test_a_signal_in_the_last_epoch_lets_the_run_complete(tmp_path, uninterrupted):
    """Nothing is left to resume: the run completes with the uninterrupted numbers, and the
    request is kept (hydrafit.engine.signals.requested) so that a sweep stops after this job."""
    global EPOCH
    EPOCH, saved = 7, EPOCH
    try:
        finished = fit(tmp_path, (signal_in("on_train_batch_end", signal.SIGINT), 0))
    finally:
        EPOCH = saved
    assert finished["status"] == "completed"
    assert {k: finished[k] for k in NUMBERS} == {k: uninterrupted[k] for k in NUMBERS}
    assert signals.requested == "SIGINT"
