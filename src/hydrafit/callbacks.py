"""Lightning callbacks of the `callbacks` group: the fit plot and the metrics file."""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import struct
import sys
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only
from tqdm.auto import tqdm

from hydrafit.metrics import final_metrics, predict
from hydrafit.plotting import fit_figure, png, refit_figure


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON through a temp file + rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def draw_fit(net, datamodule, epoch: int, fig=None):
    """The truth / data / prediction / baseline figure of `net` on `datamodule`; given `fig`,
    an earlier one of them, only its prediction and title are redrawn (refit_figure)."""
    if datamodule.truth is None:
        return draw_data_fit(net, datamodule, epoch, fig)
    arguments = fit_arguments(net, datamodule, epoch)
    if fig is not None:
        return refit_figure(fig, arguments["prediction"], arguments["title"])
    return fit_figure(**arguments)


def fit_arguments(net, datamodule, epoch: int) -> dict:
    """plotting.fit_figure's arguments for `net` on `datamodule` (data with a true function),
    as numpy arrays: a population's members are drawn in worker processes that need no torch."""
    dm, grid = datamodule, datamodule.grid()
    truth, prediction, baseline = dm.truth(grid), predict(net, grid), dm.baseline
    rmse = torch.sqrt(torch.mean((prediction - truth) ** 2)).item()
    return dict(
        grid=grid.ravel().numpy(), truth=truth.ravel().numpy(), x=dm.x_train.cpu().ravel().numpy(),
        y=dm.y_train.cpu().ravel().numpy(), prediction=prediction.ravel().numpy(),
        baseline=None if baseline is None else baseline(grid.double()).ravel().numpy(),
        title=f"epoch {epoch}: truth RMSE {rmse:.4f}", truth_label=str(dm.truth),
        x_val=dm.x_val.cpu().ravel().numpy(), y_val=dm.y_val.cpu().ravel().numpy())


def draw_data_fit(net, datamodule, epoch: int, fig=None):
    """draw_fit for data without a known true function (dataset=csv): data, prediction and
    baseline in the data's units, axes named after its columns, the train (and val) MSE on top."""
    dm, grid = datamodule, datamodule.grid()
    prediction, baseline, metrics = predict(net, grid), dm.baseline, final_metrics(net, dm)
    title = f"epoch {epoch}: train MSE {metrics['train/mse']:.4g}"
    if "val/mse" in metrics:
        title += f", val MSE {metrics['val/mse']:.4g}"
    if fig is not None:
        return refit_figure(fig, prediction.ravel(), title)
    return fit_figure(
        grid.ravel(), None, dm.x_train.cpu().ravel(), dm.y_train.cpu().ravel(), prediction.ravel(),
        None if baseline is None else baseline(grid.double()).ravel(), title=title,
        x_val=dm.x_val.cpu().ravel(), y_val=dm.y_val.cpu().ravel(),
        axis_labels=getattr(dm, "axis_labels", ("x", "y")))


class FitPlot(pl.Callback):
    """Sends the fit figure to TensorBoard `n_images` times during training and once at the end
    (so the image slider shows the fit evolving), and writes the final one to <dirpath>/fit.png.

    Rendering costs ~tens of ms a figure, so it happens on a schedule, never every epoch.
    """

    def __init__(self, dirpath: str, n_images: int = 10):
        self.dirpath, self.n_images = Path(dirpath), n_images
        self._fig = None  # built for the first image, then redrawn with each new prediction

    @staticmethod
    def _tensorboard(trainer: pl.Trainer) -> bool:
        """Whether a logger is TensorBoard; other loggers only get fit.png (log_fit_image)."""
        return any(isinstance(lg, TensorBoardLogger) for lg in trainer.loggers)

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> bytes:
        """The fit figure at `epoch`, as PNG. One figure redrawn and rendered once, where a new
        figure, add_figure's own rendering and a second one for fit.png cost ~80 ms an image
        more than half the time (0.4 s of a default run; benchmarks/, plot row)."""
        self._fig = draw_fit(pl_module.net, trainer.datamodule, epoch, self._fig)
        return png(self._fig)

    def _log_image(self, trainer: pl.Trainer, image: bytes) -> None:
        log_fit_image(trainer.loggers, image, trainer.global_step)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        every = max(1, trainer.max_epochs // max(self.n_images, 1))
        epoch = trainer.current_epoch + 1
        if self.n_images <= 0 or epoch % every or epoch >= trainer.max_epochs:
            return  # the last epoch's figure is drawn by on_fit_end
        if not self._tensorboard(trainer):
            return
        self._log_image(trainer, self._draw(trainer, pl_module, epoch))

    @rank_zero_only
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        image = self._draw(trainer, pl_module, trainer.current_epoch)
        self._log_image(trainer, image)
        save_fit(self.dirpath, image)


def log_fit_image(loggers, image: bytes, step: int) -> None:
    """The fit image, PNG bytes, to the TensorBoard loggers (the others get only fit.png)."""
    for logger in loggers:  # isinstance, not duck typing: fast_dev_run's DummyLogger answers anything
        if isinstance(logger, TensorBoardLogger):  # the PNG as it is: what add_figure makes of a figure
            logger.experiment._get_file_writer().add_summary(png_summary("fit", image), step)


def fast_event_checksums() -> None:
    """TensorBoard's event files, with each record's CRC-32C computed by google-crc32c's C code
    instead of TensorBoard's pure-Python fallback (used wherever TensorFlow is not installed):
    7 ms for a 40 kB fit image and 15 us a scalar there, ~1 us here (on this project's CPU), the
    same checksums (tests/test_train_cli.py). TensorBoard's record writer takes the function from
    its module (tensorboard.summary.writer.record_writer.masked_crc32c): the one place patched."""
    import google_crc32c
    from tensorboard.summary.writer import record_writer

    def masked_crc32c(data: bytes) -> int:  # TensorBoard's masking of the CRC, over C's CRC
        crc = google_crc32c.value(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    record_writer.masked_crc32c = masked_crc32c


def log_scalars(loggers, tag: str, values: list[float], steps: list[int]) -> None:
    """A series of `tag` (a population member's train/loss, every epoch at once) to each logger.
    To TensorBoard as summaries written straight to its event file: what its log_metrics writes,
    at a sixth of its cost (~12 us a point, not ~70, on this project's CPU; 250 a member)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment.file_writer
            for value, step in zip(values, steps):
                writer.add_summary(Summary(value=[Summary.Value(tag=tag, simple_value=value)]), step)
        else:
            for value, step in zip(values, steps):
                logger.log_metrics({tag: value}, step=step)


def save_fit(dirpath: Path, image: bytes) -> None:
    """<dirpath>/fit.png, written through a temp file + rename."""
    tmp = Path(dirpath) / ".fit.tmp.png"
    tmp.write_bytes(image)
    os.replace(tmp, Path(dirpath) / "fit.png")


def png_summary(tag: str, image: bytes):
    """A TensorBoard image summary holding `image`, PNG bytes (their size read from the header)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    width, height = struct.unpack(">II", image[16:24])  # the PNG IHDR chunk
    picture = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=image)
    return Summary(value=[Summary.Value(tag=tag, image=picture)])


class MetricsFile(pl.Callback):
    """Writes <dirpath>/metrics.json: `status: running` when fit starts, the final metrics with
    `status: completed` when it ends. The final metrics also go to the logger (filling the
    HPARAMS tab) and to `trainer.callback_metrics`, where `train` reads the optimized metric.
    """

    def __init__(self, dirpath: str):
        self.path = Path(dirpath) / "metrics.json"
        self._start = 0.0
        self.extra: dict[str, float] = {}  # known before the fit: lr_find/suggestion (train.py)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        if trainer.is_global_zero:
            write_json_atomic(self.path, {"status": "running"})

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        status, message = run_status(trainer)
        metrics = final_metrics(pl_module.net, trainer.datamodule) if status != "diverged" else {}
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        if trainer.is_global_zero:
            write_report(self.path, trainer.loggers, trainer.global_step, metrics | self.extra,
                         trainer.current_epoch, time.perf_counter() - self._start, status, message)


def write_report(path: Path, loggers, step: int, metrics: dict, epochs: int, seconds: float,
                 status: str, message: str | None) -> None:
    """The end of a run: its final metrics to every logger (the HPARAMS tab's values; logger=many
    has three) and metrics.json with how it ended (MetricsFile; each member of a population)."""
    for logger in loggers if metrics else ():
        logger.log_metrics(metrics, step=step)
    report = {**metrics, "epochs": epochs, "fit_seconds": round(seconds, 3), "status": status}
    write_json_atomic(path, report | ({"error": message} if message else {}))


class Checkpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, plus a final `last.ckpt` when training ends between two
    periodic saves (Lightning's own on_train_end saves it only if nothing was saved at all).
    Periodic saves (`every_n_epochs`) exist for resuming after a crash; saving every epoch
    would cost more than the training step of a small model."""

    @functools.cached_property
    def state_key(self) -> str:
        # Lightning formats this name for every hook it calls, ~9 an epoch (2% of a seed epoch);
        # what it is made of is fixed once the callback is built.
        return super().state_key

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args) -> None:
        if self._every_n_train_steps >= 1 or self._train_time_interval is not None:
            super().on_train_batch_end(trainer, pl_module, *args)  # else it never saves: ~10 us a step

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning deep-copies callback_metrics every epoch before deciding not to save
        # (~0.1 ms, a quarter of a seed step): decide first. The conditions are Lightning's own.
        due = self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0
        if due or self._last_global_step_saved == trainer.global_step or self.save_last == "link":
            super().on_train_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if run_status(trainer)[0] == "diverged":
            return  # keep the last finite checkpoint: resuming from NaN weights is useless
        super().on_train_end(trainer, pl_module)
        last = Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}"
        if self.save_last and not trainer.fast_dev_run and self.last_model_path == str(last):
            trainer.save_checkpoint(last, weights_only=False)  # atomic (temp file + rename) in Lightning


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


class GracefulStop(pl.Callback):
    """First SIGINT (Ctrl-C) or SIGTERM: finish the current epoch, then stop as if training had
    ended: last.ckpt is saved and metrics.json says `status: interrupted`. A second signal acts
    as usual.

    The handler only records the signal; the stop itself happens in this callback's
    on_train_epoch_end, one fixed point of every epoch, whatever the signal interrupted. Setting
    trainer.should_stop from the handler made the stop depend on where the main thread was: a
    signal between Lightning's end-of-epoch check and the next epoch's first batch ended an epoch
    that took no step while the epoch counter advanced, so the resumed run drifted from the
    uninterrupted one (issue 11). With one stopping point every completed epoch is whole, and
    `resume=<run dir>` reproduces the uninterrupted run bitwise (tests/test_signals.py sends the
    signal from inside each hook around an epoch boundary).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    requested: str | None = None  # the signal's name, process-wide: a sweep stops after this job

    def __init__(self):
        self.received: str | None = None
        self.stopped = False  # True once it stopped training before max_epochs
        self._previous: dict = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        def record(signum, frame):
            self.received = GracefulStop.requested = signal.Signals(signum).name
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


class OptunaPruning(pl.Callback):
    """In a trial of `hparams_search=optuna` with a pruner (hydra.sweeper.pruner), reports
    `metric`'s running value to the trial every `every_n_epochs` epochs and stops the run when
    Optuna's pruner says so: metrics.json then says `status: pruned` (final metrics, fit.png and
    last.ckpt are written as for a completed run). Elsewhere it does nothing.
    A metric of metrics.json (truth/rmse, train/mse, val/mse) is computed from the model as the
    end of the run would compute it (~0.4 ms on the tutorial's data); train/loss and val/loss are
    what Lightning last logged. A report is a write to the study (~12 ms with SQLite), hence
    `every_n_epochs`, not every epoch. Not optuna-integration's PyTorchLightningPruningCallback: that
    one is a `lightning` (not `pytorch_lightning`) callback and reports on validation only."""

    def __init__(self, metric: str, every_n_epochs: int = 10):
        from hydra.core.hydra_config import HydraConfig

        from hydrafit.study import job_trial

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
            from hydrafit.study import trial

            self._trial = self._trial or trial(*self._where)
            value = self._value(trainer, pl_module)
            self._trial.report(value, epoch)
            if self._trial.should_prune():
                why = f"pruned by Optuna at epoch {epoch}: {self.metric} = {value:.6g}"
        self.pruned = trainer.strategy.broadcast(why)  # every DDP rank stops together
        trainer.should_stop = trainer.should_stop or self.pruned is not None

    def _value(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        if self.metric in trainer.callback_metrics:
            return float(trainer.callback_metrics[self.metric])
        return final_metrics(pl_module.net, trainer.datamodule)[self.metric]


def run_status(trainer: pl.Trainer) -> tuple[str, str | None]:
    """How fit ended: ('completed', None), ('diverged', why), ('pruned', why) or ('interrupted', why)."""
    loss = trainer.callback_metrics.get("train/loss")
    if loss is not None and not math.isfinite(float(loss)):
        lr = trainer.optimizers[0].defaults.get("lr") if trainer.optimizers else None
        return "diverged", diverged_message(float(loss), trainer.current_epoch, lr)
    pruning = next((c for c in trainer.callbacks if isinstance(c, OptunaPruning) and c.pruned), None)
    if pruning:
        return "pruned", pruning.pruned
    stopper = next((c for c in trainer.callbacks if isinstance(c, GracefulStop) and c.stopped), None)
    if stopper:
        return "interrupted", interrupted_message(stopper.received, trainer.current_epoch, trainer.default_root_dir)
    return "completed", None


def diverged_message(loss: float, epoch: int, lr: float | None) -> str:
    hint = f"; try a lower learning rate, e.g. optimizer.lr={lr / 10:g}" if lr else ""
    return f"train/loss became {loss} at epoch {epoch}{hint}"


def interrupted_message(signal_name: str, epoch: int, run_dir) -> str:
    return f"{signal_name} received: stopped after epoch {epoch}; continue with: hydrafit-train resume={run_dir}"


class NoProfiler(pl.profilers.PassThroughProfiler):
    """Lightning's default profiler, minus its cost: the Trainer wraps every hook of every
    callback in `profiler.profile(...)`, ~140 times an epoch, and the default's generator-based
    context manager costs ~1 us each, this one 0.2 us (~0.1 ms an epoch saved, a third of a seed
    step in plain PyTorch; benchmarks/, target 1). train.build passes it unless trainer.profiler is set."""

    _nothing = contextlib.nullcontext()

    def profile(self, action_name: str):
        return self._nothing
