"""fit.png and the fit images in TensorBoard: the truth / data / prediction figure of a run.

A single run draws it from the FitPlot callback during and after training; a population's
members are drawn by fit_images once the population is trained. Both write fit.png through
write_fit_png. A member's figure uses axes shared by its population (plotting.fit_png), so that
a sweep's figures compare at a glance; a single run's axes fit its own data.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from hydrafit.metrics import final_metrics, predict
from hydrafit.plotting import fit_figure, fit_png, png, refit_figure, shared_limits
from hydrafit.report.loggers import log_fit_image
from hydrafit.rundir.files import write_atomic


def draw_fit(net, datamodule, epoch: int, fig=None):
    """The truth / data / prediction / baseline figure of `net` on `datamodule`; given `fig`,
    an earlier one of them, only its prediction and title are redrawn (refit_figure)."""
    arguments = fit_arguments(net, datamodule, epoch)
    if fig is not None:
        return refit_figure(fig, arguments["prediction"], arguments["title"])
    return fit_figure(**arguments)


def fit_arguments(net, datamodule, epoch: int) -> dict:
    """plotting.fit_figure's arguments for `net` on `datamodule`, as numpy arrays: a population's
    members are drawn in worker processes that need no torch. Data with a true function is
    titled by the truth RMSE; data without one (dataset=csv) by the train (and val) MSE, its
    axes named after its columns."""
    dm, grid = datamodule, datamodule.grid()
    prediction, baseline = predict(net, grid), dm.baseline
    if dm.truth is None:
        truth, metrics = None, final_metrics(net, dm)
        title = f"epoch {epoch}: train MSE {metrics['train/mse']:.4g}"
        title += f", val MSE {metrics['val/mse']:.4g}" if "val/mse" in metrics else ""
    else:
        truth = dm.truth(grid)
        title = f"epoch {epoch}: truth RMSE {torch.sqrt(torch.mean((prediction - truth) ** 2)).item():.4f}"
    return dict(
        grid=grid.ravel().numpy(), truth=None if truth is None else truth.ravel().numpy(),
        x=dm.x_train.cpu().ravel().numpy(), y=dm.y_train.cpu().ravel().numpy(), prediction=prediction.ravel().numpy(),
        baseline=None if baseline is None else baseline(grid.double()).ravel().numpy(),
        title=title, truth_label=str(dm.truth), axis_labels=getattr(dm, "axis_labels", ("x", "y")),
        x_val=dm.x_val.cpu().ravel().numpy(), y_val=dm.y_val.cpu().ravel().numpy())


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
        write_fit_png(self.dirpath, image)


def write_fit_png(run_dir: Path, image: bytes) -> None:
    """<run_dir>/fit.png: the final fit figure, PNG bytes."""
    write_atomic(Path(run_dir) / "fit.png", image)


def fit_images(members: list, outcome) -> list:
    """Each member's final fit figure as PNG, one callable a member that renders it where its run
    directory is written: on axes shared by the population (plotting.fit_png, ~20 ms an image)."""
    arguments = [fit_arguments(m.module.net, m.datamodule, outcome.epochs_of(k)) for k, m in enumerate(members)]
    limits = shared_limits(arguments)
    return [partial(fit_png, a, limits) for a in arguments]
