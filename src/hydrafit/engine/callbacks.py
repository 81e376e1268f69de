"""Lightning callbacks that steer a fit: stop on a NaN loss, stop gracefully on Ctrl-C, one
progress bar over epochs, no profiler cost; and how a fit ended (run_status). The callbacks
that write a run's files are hydrafit.report's."""
from __future__ import annotations

import contextlib
import functools
import math
import signal
import sys
import threading

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, ProgressBar
from tqdm.auto import tqdm

from hydrafit.engine import signals


class StopOnDivergence(EarlyStopping):
    """Stops training at the end of the epoch whose `monitor` is NaN or inf, and only then:
    Lightning's EarlyStopping(check_finite=True) without its patience rule. Being an
    EarlyStopping, it runs after the LightningModule's on_train_epoch_end, so it sees the
    epoch's loss (the mean over DDP ranks, the same on all of them). A finite loss costs it one
    float(); EarlyStopping's best-score bookkeeping cost ~60 us an epoch (6% of a seed epoch)."""

    def __init__(self, monitor: str = "train/loss"):
        super().__init__(monitor=monitor, check_finite=True, check_on_train_epoch_end=True,
                         patience=sys.maxsize)

    @functools.cached_property
    def state_key(self) -> str:  # formatted once, not for every hook call (see Checkpoint)
        return super().state_key

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not math.isfinite(value):  # missing: EarlyStopping says so
            super().on_train_epoch_end(trainer, pl_module)


class EpochProgressBar(ProgressBar):
    """One tqdm bar over epochs, showing train/loss. Lightning's TQDMProgressBar draws one
    bar per epoch, which for 250 one-batch epochs is 250 bars of noise."""

    def __init__(self, refresh_seconds: float = 0.25):
        super().__init__()
        self.refresh_seconds, self._enabled, self._bar = refresh_seconds, True, None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
            self._bar = tqdm(total=total, initial=trainer.current_epoch, desc="Training",
                             unit="epoch", mininterval=self.refresh_seconds, dynamic_ncols=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is not None:
            loss = trainer.callback_metrics.get("train/loss")
            if loss is not None:
                self._bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)
            self._bar.update(1)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.on_train_end(trainer, pl_module)  # its line ends before the line that reports the error


class GracefulStop(pl.Callback):
    """First SIGINT (Ctrl-C) or SIGTERM: finish the current epoch, then stop as if training had
    ended: last.ckpt is saved and metrics.json says `status: interrupted`. A second signal acts
    as usual.

    The handler only records the signal; the stop itself happens in this callback's
    on_train_epoch_end, one fixed point of every epoch, whatever the signal interrupted. Setting
    trainer.should_stop from the handler made the stop depend on where the main thread was: a
    signal between Lightning's end-of-epoch check and the next epoch's first batch ended an epoch
    that took no step while the epoch counter advanced, so the resumed run drifted from the
    uninterrupted one. With one stopping point every completed epoch is whole, and
    `resume=<run dir>` reproduces the uninterrupted run bitwise (tests/test_signals.py sends the
    signal from inside each hook around an epoch boundary).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: str | None = None
        self.stopped = False  # True once it stopped training before max_epochs
        self._previous: dict = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        def record(signum, frame):
            self.received = signals.requested = signal.Signals(signum).name
            self._restore()
        self._previous = {s: signal.signal(s, record) for s in self.SIGNALS}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A non-monitoring callback: Lightning runs this before Checkpoint's on_train_epoch_end,
        # and the fit loop checks should_stop right after the epoch's hooks.
        last_epoch = 0 < (trainer.max_epochs or -1) <= trainer.current_epoch + 1
        if self.received and not self.stopped and not last_epoch:
            trainer.should_stop = self.stopped = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()  # before Lightning's teardown restores the handlers it found

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception) -> None:
        self._restore()  # the caller's handlers again (hydrafit.fit in a notebook), also after an error

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class NoProfiler(pl.profilers.PassThroughProfiler):
    """Lightning's default profiler, minus its cost: the Trainer wraps every hook of every
    callback in `profiler.profile(...)`, ~140 times an epoch, and the default's generator-based
    context manager costs ~1 us each, this one 0.2 us (~0.1 ms an epoch saved, a third of a seed
    step in plain PyTorch; benchmarks/, row 1). engine.single.build passes it unless trainer.profiler is set."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str):
        return self._nothing
