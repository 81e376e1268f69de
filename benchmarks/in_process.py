"""hydrafit runs inside the benchmark's own process, for the targets whose baseline is a plain
PyTorch loop in that same process (1 and 3) and for the plot cost.

The config is composed from hydrafit's conf/ with Hydra's compose API and the overrides a user
would type, and trained by hydrafit.engine.single's own `train` / `build`: the CLI path minus process
start-up, which targets 1 and 3 leave out of their figures anyway.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

import hydrafit.engine.single
from hydrafit.config.compose import compose_job

warnings.filterwarnings("ignore")  # Lightning's advice is noise in a benchmark's output
for _name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
    logging.getLogger(_name).setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet():
    """Send the progress bar and log lines of a benchmarked fit to /dev/null."""
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull), \
            contextlib.redirect_stdout(devnull):
        yield


def train_seconds(overrides: list[str], inspect=None) -> float:
    """Wall seconds of hydrafit.engine.single.train(cfg): build, fit, final metrics, plot, checkpoint.
    `inspect(run_dir)`, if given, looks at what the run wrote before it is deleted."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_job(overrides, Path(tmp) / "run")
        with quiet():
            start = time.perf_counter()
            hydrafit.engine.single.train(cfg)
            seconds = time.perf_counter() - start
        if inspect:
            inspect(Path(tmp) / "run")
        return seconds


def seed_ms_per_epoch(short: int, long: int, repeats: int) -> float:
    """Target 1: ms per epoch of the default run, from the fastest of `repeats` runs of `short`
    and of `long` epochs; what every run pays once (build, ~10 images, final metrics) cancels."""
    train_seconds([f"trainer.max_epochs={short}"])  # warm-up: lazy imports, first allocations
    fastest = {n: min(train_seconds([f"trainer.max_epochs={n}"]) for _ in range(repeats))
               for n in (short, long)}
    return (fastest[long] - fastest[short]) / (long - short) * 1e3


class TrainTimer(pl.Callback):
    """Seconds from on_train_start to on_train_end: the epochs with every hook that runs in them."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)  # count the queued GPU work
        self.seconds = time.perf_counter() - self.start


def large_samples_per_second(n_points: int, batch_size: int, repeats: int, device: str = "cpu",
                             extra: tuple[str, ...] = ()) -> float:
    """Target 3: training samples per second of one hydrafit epoch over `n_points` in batches of
    `batch_size` (best of `repeats`), timed inside the fit, so data creation, the final metrics
    and the final plot are left out as the plain loop leaves them out. device "cuda": trainer=gpu.
    `extra`: more overrides, e.g. dataset.steps_per_batch=1."""
    overrides = [f"dataset.n_points={n_points}", f"dataset.batch_size={batch_size}",
                 "trainer.max_epochs=1", *(["trainer=gpu"] if device == "cuda" else []), *extra]
    rates = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            datamodule, module, trainer = hydrafit.engine.single.build(compose_job(overrides, Path(tmp) / "run"))
            timer = TrainTimer()
            trainer.callbacks.append(timer)  # last: its on_train_end comes after the others'
            with quiet():
                trainer.fit(module, datamodule=datamodule)
            rates.append(len(datamodule.x_train) / timer.seconds)
    return max(rates)


class BareModule(pl.LightningModule):
    """The seed's MLP and Adam as the shortest LightningModule: no logging, nothing else."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        (x, y), = batch  # a data.Steps of one mini-batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.03)


def lightning_floor_samples_per_second(n_points: int, batch_size: int, repeats: int,
                                       device: str = "cpu") -> float:
    """Target 3's context: what Lightning's own loop allows. A bare LightningModule trained on
    hydrafit's TensorBatches, with no callbacks, logger, checkpoints or bar (best of `repeats`)."""
    from benchmarks.plain import seed_data
    from hydrafit.data import TensorBatches

    x, y = (t.to(device) for t in seed_data(n_points))
    rates = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            timer = TrainTimer()
            trainer = pl.Trainer(max_epochs=1, accelerator=device, devices=1, logger=False,
                                 callbacks=[timer], enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False, default_root_dir=tmp)
            with quiet():
                trainer.fit(BareModule(), train_dataloaders=TensorBatches(x, y, batch_size, seed=0))
            rates.append(n_points / timer.seconds)
    return max(rates)


def count_images(run_dir: Path) -> int:
    """How many fit figures the run sent to TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return len(events.Images("fit")) if "fit" in events.Tags()["images"] else 0


def plot_seconds(epochs: int, repeats: int) -> dict[str, float]:
    """Fastest default run of `epochs` epochs with the fit plot as configured ("default"), with
    no images during training ("final_only": callbacks.fit_plot.n_images=0) and with no plot
    ("none"), and how many TensorBoard images the default run drew ("images")."""
    variants = {"default": [], "final_only": ["callbacks.fit_plot.n_images=0"],
                "none": ["~callbacks.fit_plot"]}
    images = []
    train_seconds([f"trainer.max_epochs={epochs}"], inspect=lambda run: images.append(count_images(run)))
    result = {name: min(train_seconds([f"trainer.max_epochs={epochs}", *extra]) for _ in range(repeats))
              for name, extra in variants.items()}
    return result | {"images": images[0]}
