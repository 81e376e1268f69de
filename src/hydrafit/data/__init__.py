"""Datasets: a known 1-D target function sampled with noise, served as tensor slices.

The config group `dataset` picks a factory below (`polynomial`, `sine`, `expression`); each
returns a `FunctionDataModule`. `from_csv` (dataset=csv) reads a user's points from a file into
a `PointsDataModule`, which has no true function. Batches are slices of tensors that already
live on the training device, never per-sample indexing plus collate (37x slower at 1M points on this machine).
"""
from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate, to_absolute_path

from hydrafit.config.errors import ConfigError
from hydrafit.config.expression import Expression
from hydrafit.data.csvfile import read_columns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Polynomial:
    """y = sum_i coefficients[i] * x**i (ascending, like Julia's evalpoly)."""

    coefficients: tuple[float, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros_like(x)
        for c in reversed(self.coefficients):  # Horner's rule
            y = y * x + c
        return y

    def __str__(self) -> str:
        """Highest power first, e.g. 'y = x^2 - 2x' for coefficients (0, -2, 1)."""
        terms = []
        for i, c in reversed(list(enumerate(self.coefficients))):
            if c == 0:
                continue
            power = "" if i == 0 else "x" if i == 1 else f"x^{i}"
            size = f"{abs(c):g}" if abs(c) != 1 or i == 0 else ""
            terms.append(("- " if c < 0 else "+ ") + size + power)
        text = " ".join(terms).removeprefix("+ ") or "0"
        return "y = " + (text.replace("- ", "-", 1) if text.startswith("- ") else text)


@dataclass(frozen=True)
class Sine:
    """y = amplitude * sin(frequency * x + phase)."""

    amplitude: float
    frequency: float
    phase: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.sin(self.frequency * x + self.phase)

    def __str__(self) -> str:
        return f"y = {self.amplitude:g} sin({self.frequency:g}x + {self.phase:g})"


class Steps:
    """One Lightning batch: consecutive mini-batches of an epoch, each (x[idx], y[idx]) for the
    next `batch_size` indexes of `order`, or the whole (x, y) once when `order` is None (full
    batch). Sliced as the model iterates, next to where each mini-batch is used. A plain class,
    not a dataclass: Lightning's batch transfer leaves it alone (its tensors are on the device)."""

    __slots__ = ("x", "y", "order", "batch_size")

    def __init__(self, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor | None = None,
                 batch_size: int = 0):
        self.x, self.y, self.order, self.batch_size = x, y, order, batch_size

    def __len__(self) -> int:
        return 1 if self.order is None else math.ceil(len(self.order) / self.batch_size)

    def __iter__(self):
        if self.order is None:
            yield self.x, self.y
            return
        for start in range(0, len(self.order), self.batch_size):
            idx = self.order[start:start + self.batch_size]
            yield self.x[idx], self.y[idx]


class TensorBatches:
    """The epochs of (x, y), shuffled per epoch, as Lightning batches of `steps_per_batch`
    mini-batch steps each (`Steps`).

    Several steps a batch: Lightning's own work per batch (~0.4 ms on a 2-core CPU: hooks,
    progress, closures) is more than a whole step of a small model on 4096 points (~0.7 ms in
    plain PyTorch); grouping the steps pays it once per group (benchmarks/, row 3), as
    Keras' steps_per_execution does. The model takes the steps (models.Regressor.training_step).

    The permutation of epoch e comes from a generator seeded with (seed, e), so a run resumed
    from a checkpoint at epoch e sees exactly the batches an uninterrupted run would; Lightning
    tells the epoch before each one through `sampler.set_epoch`, as it does for PyTorch's
    DistributedSampler. Under DDP every rank draws the same permutation and takes every
    world_size-th index of it: the data is sharded, not duplicated, and `batch_size` stays the
    global batch.
    """

    batch_sampler = None  # with `sampler`: what Lightning reads of a DataLoader-like object

    def __init__(self, x, y, batch_size: int | None, seed: int, rank: int = 0, world_size: int = 1,
                 steps_per_batch: int = 1):
        self.x, self.y = x, y
        self.full_batch = batch_size is None or batch_size >= len(x)
        self.batch_size = len(x) if self.full_batch else max(1, batch_size // world_size)
        self.seed, self.epoch, self.rank, self.world_size = seed, 0, rank, world_size
        self.steps_per_batch = steps_per_batch

    @property
    def sampler(self) -> TensorBatches:
        return self  # where Lightning looks for set_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def steps_per_epoch(self) -> int:
        return 1 if self.full_batch else math.ceil(len(self.x) // self.world_size / self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.steps_per_epoch() / self.steps_per_batch)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1  # the next epoch, unless set_epoch says
        if self.full_batch:  # order is irrelevant to the loss; [0::1] is a view, not a copy
            yield Steps(self.x[self.rank::self.world_size], self.y[self.rank::self.world_size])
            return
        order = epoch_order(self.seed, epoch, len(self.x)).to(self.x.device)
        # Drop the remainder so that every rank runs the same number of steps (DDP needs it).
        shard = order[:len(order) // self.world_size * self.world_size][self.rank::self.world_size]
        group = self.batch_size * self.steps_per_batch
        for start in range(0, len(shard), group):
            yield Steps(self.x, self.y, shard[start:start + group], self.batch_size)


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The shuffled order of n points in `epoch` of a run seeded `seed` (TensorBatches, and each
    member of a population: hydrafit.engine.population)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


class PointsDataModule(pl.LightningDataModule):
    """Given points (x, y): a seeded random validation split, tensor batches on the training
    device, the least-squares baseline. `truth`, the noiseless function when it is known, adds
    the truth curve and truth metrics; dataset=csv has none (see from_csv).
    `steps_per_batch`: mini-batch steps a Lightning batch holds (TensorBatches says why).
    `generator` continues the random stream that made the points (FunctionDataModule)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seed: int, truth=None,
                 batch_size: int | None = None, val_fraction: float = 0.0,
                 baseline_degree: int | None = None, standardize: bool = False,
                 axis_labels: tuple[str, str] = ("x", "y"), generator: torch.Generator | None = None,
                 steps_per_batch: int = 1):
        super().__init__()
        self.truth, self.axis_labels = truth, axis_labels  # axis labels of the plot
        self.x_range = (x.min().item(), x.max().item())
        self.batch_size, self.seed, self.baseline_degree = batch_size, seed, baseline_degree
        self.steps_per_batch = steps_per_batch
        gen = generator or torch.Generator().manual_seed(seed)
        n_val = round(val_fraction * len(x))
        order = torch.randperm(len(x), generator=gen)
        val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
        self.x_train, self.y_train = x[train_idx], y[train_idx]
        self.x_val, self.y_val = x[val_idx], y[val_idx]
        self.scaling = standard_scaling(self.x_train, self.y_train) if standardize else None

    def on_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) on the training device in the dtype of trainer.precision (float64 for 64-true),
        converted once here: Lightning's per-batch conversion passes data.Steps by."""
        device = self.trainer.strategy.root_device
        return self.trainer.precision_plugin.convert_input((x.to(device), y.to(device)))

    def train_dataloader(self) -> TensorBatches:
        rank, world_size = self.trainer.global_rank, self.trainer.world_size
        if world_size > 1:
            log.info("Rank %d of %d trains on its shard: %d of %d points", rank, world_size,
                     len(range(rank, len(self.x_train), world_size)), len(self.x_train))
        # Lightning's automatic optimization takes one optimizer step per batch (see
        # models.Regressor.automatic_optimization); otherwise the model takes several.
        steps = 1 if self.trainer.lightning_module.automatic_optimization else self.steps_per_batch
        return TensorBatches(*self.on_device(self.x_train, self.y_train), self.batch_size, self.seed,
                             rank=rank, world_size=world_size, steps_per_batch=steps)

    def val_on_device(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The validation split (x_val, y_val) as on_device converts it, or None without one.
        No val_dataloader: models.Regressor computes val/loss from these tensors at each epoch's
        end, because Lightning's validation loop costs ~2 ms an epoch on a 2-core CPU for one
        full batch whose arithmetic costs ~0.05 ms."""
        return self.on_device(self.x_val, self.y_val) if len(self.x_val) else None

    def grid(self, n: int = 1000) -> torch.Tensor:
        """A dense noiseless grid over x_range, where truth metrics and the plot are evaluated."""
        return torch.linspace(*self.x_range, n).unsqueeze(1)

    @functools.cached_property
    def baseline(self) -> Polynomial | None:
        """Closed-form least-squares polynomial of the training data (ascending coefficients).
        Fitted once: every plot and the final metrics use it (0.2 s a fit at 1M points)."""
        if self.baseline_degree is None:
            return None
        x, y = self.x_train.cpu().double().numpy().ravel(), self.y_train.cpu().double().numpy().ravel()
        return Polynomial(tuple(np.polynomial.polynomial.polyfit(x, y, self.baseline_degree)))


class FunctionDataModule(PointsDataModule):
    """n_points of truth(x) + noise_std * N(0, 1) on an even grid over x_range."""

    def __init__(self, truth, n_points: int, x_range, noise_std: float, seed: int,
                 batch_size: int | None = None, val_fraction: float = 0.0,
                 baseline_degree: int | None = None, standardize: bool = False,
                 steps_per_batch: int = 1):
        gen = torch.Generator().manual_seed(seed)  # data noise independent of model init
        x = torch.linspace(float(x_range[0]), float(x_range[1]), n_points).unsqueeze(1)
        y = truth(x) + noise_std * torch.randn(x.shape, generator=gen)
        super().__init__(x, y, seed, truth, batch_size, val_fraction, baseline_degree,
                         standardize, generator=gen, steps_per_batch=steps_per_batch)
        self.x_range = (float(x_range[0]), float(x_range[1]))  # as configured, not float32-rounded


def standard_scaling(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Mean and standard deviation of the training x and y. The model wraps its net in them
    (models.Standardized), so the net fits unit-scale numbers while everything outside it,
    metrics, plots, predictions, stays in the data's own units."""
    stats = {}
    for name, t in (("x", x), ("y", y)):
        mean, std = t.double().mean().item(), t.double().std(unbiased=False).item()
        stats |= {f"{name}_mean": mean, f"{name}_std": std if std > 0 else 1.0}
    return stats


def polynomial(coefficients, **sampling) -> FunctionDataModule:
    """dataset=polynomial: noisy samples of evalpoly(x, coefficients)."""
    return FunctionDataModule(Polynomial(tuple(float(c) for c in coefficients)), **sampling)


def sine(amplitude: float, frequency: float, phase: float, **sampling) -> FunctionDataModule:
    """dataset=sine: noisy samples of amplitude * sin(frequency * x + phase)."""
    return FunctionDataModule(Sine(amplitude, frequency, phase), **sampling)


def expression(expr: str, **sampling) -> FunctionDataModule:
    """dataset=expression: noisy samples of a formula in x, e.g. "sin(3*x) + 0.5*x", checked
    and evaluated by hydrafit.config.expression (never by Python's eval)."""

    datamodule = FunctionDataModule(Expression(expr), **sampling)
    grid = datamodule.grid()
    bad = ~torch.isfinite(torch.cat([datamodule.truth(grid), datamodule.y_train, datamodule.y_val]))
    if bad.any():  # e.g. log(x) or 1/x over a range that includes x <= 0
        where = grid[bad[:len(grid)]] if bad[:len(grid)].any() else None
        at = f" (e.g. at x = {where[0].item():.4g})" if where is not None else ""
        raise ConfigError(f"dataset.expr: '{expr}' is not finite everywhere on dataset.x_range="
                          f"{list(datamodule.x_range)}{at}; change the formula or the range")
    return datamodule


def from_csv(path: str, x: str | int, y: str | int, seed: int, val_fraction: float = 0.2,
             batch_size: int | None = None, baseline_degree: int | None = 3,
             standardize: bool = True, drop_invalid: bool = False,
             steps_per_batch: int = 1, encoding: str | None = None, delimiter: str | None = None,
             decimal: str = "auto") -> PointsDataModule:
    """dataset=csv: columns `x` and `y` (header names, or 0-based indexes) of a CSV file, read
    as hydrafit.data.csvfile reads what spreadsheets write (encoding, delimiter and decimal mark
    detected unless given). A relative `path` is relative to the directory hydrafit-train was
    started in."""


    file = Path(to_absolute_path(path))
    if not file.is_file():
        raise ConfigError(f"dataset.path: no file '{path}' (looked for {file})")
    points = read_points(file, file.stat().st_mtime_ns, x, y, drop_invalid, encoding, delimiter, decimal)
    n_train = len(points) - round(val_fraction * len(points))
    if n_train < 2:
        raise ConfigError(f"dataset.path: {file.name} has {len(points)} usable rows; with "
                          f"dataset.val_fraction={val_fraction} that leaves {n_train} to train on (need 2)")
    labels = tuple(c if isinstance(c, str) else f"column {c}" for c in (x, y))
    return PointsDataModule(points[:, :1].float(), points[:, 1:].float(), seed, None, batch_size,
                            val_fraction, baseline_degree, standardize, labels,
                            steps_per_batch=steps_per_batch)


@functools.lru_cache(maxsize=8)
def read_points(file: Path, mtime_ns: int, x, y, drop_invalid: bool, encoding, delimiter, decimal):
    """The (x, y) rows of a CSV file (csvfile.read_columns), read once per process and file
    version, as a tensor: the members of a population (hydra/launcher=vectorized) each build
    their data from the same file. Shared: callers copy what they change (from_csv's slices do)."""
    hint = "; fix the file, or drop such rows with dataset.drop_invalid=true"
    return torch.from_numpy(read_columns(file, {"dataset.x": x, "dataset.y": y}, "dataset.path", drop_invalid,
                                         hint, encoding, delimiter, decimal))


def load_dataset(dataset, seed: int):
    """The datamodule of a `dataset` config. A data file that cannot be used (dataset=csv) or a
    formula that is not finite on the range (dataset=expression) raises ConfigError, not
    Hydra's InstantiationException, so that it ends a run with one line and exit code 2."""
    try:
        return instantiate(dataset, seed=seed, _convert_="all")
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise
