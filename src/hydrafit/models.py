"""Networks for the `model` config group, and the LightningModule that trains any of them."""
from __future__ import annotations

import itertools
import time
from functools import partial

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn

from hydrafit.config.errors import ConfigError
from hydrafit.config.validate import ACTIVATIONS as ACTIVATION_NAMES
from hydrafit.data import Steps

ACTIVATIONS = {name: getattr(nn, cls) for name, cls in ACTIVATION_NAMES.items()}


def mlp(hidden_dims, activation: str = "relu", init: str = "torch") -> nn.Sequential:
    """model=mlp: 1 -> hidden_dims[0] -> ... -> 1 with `activation` between Linear layers."""
    dims = [1, *hidden_dims, 1]
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(d_in, d_out), ACTIVATIONS[activation]()]
    net = nn.Sequential(*layers[:-1])  # no activation after the output layer
    if init == "glorot_uniform":  # Lux < 1.0 Dense: glorot_uniform weights, zero biases
        for layer in net:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
    return net


class Monomials(nn.Module):
    """x -> [x, x^2, ..., x^degree]: features for a linear model."""

    def __init__(self, degree: int):
        super().__init__()
        self.register_buffer("powers", torch.arange(1, degree + 1, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x ** self.powers


def polynomial(degree: int = 2) -> nn.Sequential:
    """model=polynomial: a linear model on monomial features (least squares, learned by SGD)."""
    return nn.Sequential(Monomials(degree), nn.Linear(degree, 1))


class Standardized(nn.Module):
    """`net` fitted to standardised data, called in the data's own units:
    y = net((x - x_mean) / x_std) * y_std + y_mean. With `dataset.standardize=true` the
    Regressor's net is this wrapper, so metrics, plots and hydrafit-eval predictions need no
    knowledge of the scaling; the statistics come from the training split (data.standard_scaling)."""

    def __init__(self, net: nn.Module, x_mean: float, x_std: float, y_mean: float, y_std: float):
        super().__init__()
        self.net, self.x_mean, self.x_std, self.y_mean, self.y_std = net, x_mean, x_std, y_mean, y_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.x_mean) / self.x_std) * self.y_std + self.y_mean


# Attributes a training LightningModule sets again and again, none of them a parameter, buffer or
# submodule: Lightning sets _current_fx_name around each of ~60 hook calls an epoch, and the loss
# sums change every step. nn.Module's checks on a set cost ~1.5 us (~0.05 ms an epoch, 15% of a
# seed step; 10% of a 48-member population's fit on this project's CPU).
PLAIN_ATTRIBUTES = frozenset({"_current_fx_name", "_loss_sum", "_loss_count", "_snapshot"})


# Layers that compute the same in train and eval mode: the modules of hydrafit's own nets.
MODE_FREE = frozenset({nn.Sequential, nn.Linear, Monomials, Standardized, *ACTIVATIONS.values()})


def set_attribute(module: nn.Module, name: str, value) -> None:
    """The __setattr__ of Regressor and hydrafit.engine.population.Population (the function itself, no
    frame in between): PLAIN_ATTRIBUTES set directly, others through nn.Module's
    (LightningModule has none of its own)."""
    if name in PLAIN_ATTRIBUTES:
        object.__setattr__(module, name, value)
    else:
        nn.Module.__setattr__(module, name, value)


class Regressor(pl.LightningModule):
    """MSE regression of y on x. Built from plain config dicts so a checkpoint carries only
    plain containers: it reloads with torch's default `weights_only=True`.

    model, optimizer, scheduler: resolved configs of those groups (`_target_` + arguments);
    optimizer and scheduler are `_partial_` and get finished in configure_optimizers.
    scaling: the training data's means and stds (data.standard_scaling) or None; when given,
    the net is wrapped in Standardized and the loss minimised is the MSE in standard units.
    Each batch is a data.Steps of one or more mini-batches; training_step takes their optimizer
    steps (see automatic_optimization for when Lightning takes them instead).
    """

    _loss_sum, _loss_count = 0.0, 0  # this epoch's sum of batch losses x batch sizes, and of sizes
    _unlogged: list | tuple = ()  # (step, {name: 0-d tensor}) of the epochs not yet handed to the loggers
    _val: tuple | None = None  # the validation split (x, y) on the training device while fitting, if any
    _val_every, _val_in_eval_mode = 1, False  # see on_train_start
    one_step_per_batch = False  # set by hydrafit.engine.lr_finder while Lightning's finder runs
    lr_suggestion: float | None = None  # lr_find=true: the lr trained with (metrics.json records it)

    def __init__(self, model: dict, optimizer: dict, scheduler: dict | None = None,
                 scaling: dict | None = None):
        super().__init__()
        self.save_hyperparameters(logger=False)  # train() logs the whole run config itself
        self.net = instantiate(model, _convert_="all")
        if scaling:
            self.net = Standardized(self.net, **scaling)

    __setattr__ = set_attribute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @property
    def automatic_optimization(self) -> bool:
        """Whether Lightning takes the optimizer steps, one per batch. hydrafit takes them itself
        (Lightning's manual optimization), so that a batch can hold several (data.TensorBatches
        says why), except when the Trainer is asked for what only Lightning's automatic
        optimization does: gradient clipping or accumulation, or the learning-rate finder, which
        steps its lr schedule and reads the loss only there."""
        trainer = self._trainer
        return trainer is not None and (self.one_step_per_batch or bool(trainer.gradient_clip_val)
                                        or trainer.accumulate_grad_batches != 1)

    def training_step(self, batch: Steps, batch_idx: int):
        loss = None
        if self.automatic_optimization:  # Lightning steps the optimizer: one mini-batch a batch
            (x, y), = batch
            loss = self.loss(x, y)
        else:
            optimizer, max_steps = self.optimizers(), self.trainer.max_steps
            # Lightning checks trainer.max_steps between batches only: stop inside this one
            left = len(batch) if max_steps < 0 else max_steps - self.global_step
            for x, y in itertools.islice(batch, left):
                optimizer.step(closure=partial(self.backward_loss, optimizer, x, y))
        if self._loss_count:  # the epoch's mean so far, for callbacks; on_train_epoch_end logs it
            self.trainer.callback_metrics["train/loss"] = self._loss_sum / self._loss_count
        return loss

    def backward_loss(self, optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """An optimizer step's closure (L-BFGS calls it several times): fresh gradients of the loss."""
        optimizer.zero_grad()
        loss = self.loss(x, y)
        self.manual_backward(loss)
        return loss

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The MSE of the batch (x, y) as the optimizer sees it; adds to the epoch's train/loss."""
        loss = nn.functional.mse_loss(self.net(x), y)
        # Not self.log: Lightning's per-call bookkeeping costs ~0.5 ms, more than this whole step
        # of the seed (0.35 ms in plain PyTorch; benchmarks/, row 1).
        self._loss_sum = self._loss_sum + loss.detach() * len(x)
        self._loss_count += len(x)
        if self.hparams.scaling:  # optimise in standard units: optimizer settings do not depend on y's
            return loss / self.hparams.scaling["y_std"] ** 2
        return loss

    def on_train_start(self) -> None:
        self._unlogged, self._next_log = [], time.monotonic() + 1.0
        # val/loss is computed by on_train_epoch_end, not by Lightning's validation loop, whose
        # per-epoch work (hooks, a data fetcher, self.log's bookkeeping) is ~2 ms on a 2-core CPU
        # for a full batch whose arithmetic costs ~0.05 ms. The split goes to the device once.
        trainer, datamodule = self.trainer, self.trainer.datamodule
        split = getattr(datamodule, "val_on_device", None)
        self._val = split() if split is not None and trainer.limit_val_batches else None
        self._val_every = trainer.check_val_every_n_epoch or 1  # as Lightning's loop reads it
        # Lightning validates in eval mode; switching modes costs ~30 us an epoch, half the
        # arithmetic, so only for a net with a layer that could behave differently in it
        # (hydrafit's own nets have none).
        self._val_in_eval_mode = any(type(m) not in MODE_FREE for m in self.net.modules())

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_count = 0.0, 0

    def on_train_epoch_end(self) -> None:
        """train/loss of the epoch: the mean over all ranks' batches (one collective under DDP,
        none in one process), and val/loss, the MSE of the validation split in the data's
        units (the same on every rank: each holds the whole split): to callback_metrics for
        the monitoring callbacks, which Lightning runs after this hook, and to the loggers at
        the step Lightning gives epoch metrics. Both stay tensors until log_epoch_losses."""
        scheduler = self.lr_schedulers()
        if scheduler is not None and not self.automatic_optimization:  # else Lightning steps it
            scheduler.step()
        losses = {}
        if self._loss_count:
            loss = self._loss_sum / self._loss_count
            if self.trainer.world_size > 1:
                total = torch.stack([self._loss_sum, self._loss_sum.new_tensor(self._loss_count)])
                total = self.trainer.strategy.reduce(total, reduce_op="sum")
                loss = total[0] / total[1]
            self.trainer.callback_metrics["train/loss"] = losses["train/loss"] = loss
        if self._val is not None and (self.current_epoch + 1) % self._val_every == 0:
            self.trainer.callback_metrics["val/loss"] = losses["val/loss"] = self.validation_loss()
        if losses and self.loggers:
            self._unlogged.append((self.global_step - 1, losses))
            if time.monotonic() >= self._next_log:
                self.log_epoch_losses()

    def validation_loss(self) -> torch.Tensor | None:
        """The MSE of the validation split in the data's units, as Lightning's validation loop
        would compute it (no gradients, the precision's validation context: autocast under mixed
        precision); None when the fit has no split."""
        if self._val is None:
            return None
        x, y = self._val
        if self._val_in_eval_mode:
            self.net.eval()
        with torch.no_grad(), self.trainer.precision_plugin.val_step_context():
            loss = nn.functional.mse_loss(self.net(x), y)
        if self._val_in_eval_mode:
            self.net.train()
        return loss

    def on_train_end(self) -> None:
        self.log_epoch_losses()
        self._val = None  # the split's device copy is the fit's, not the returned model's

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.log_epoch_losses()  # a run resumed from this checkpoint finds every loss before it

    def log_epoch_losses(self) -> None:
        """Hand the epoch losses kept since the last call to the loggers, and flush them. Once a
        second, not every epoch: a scalar an epoch woke TensorBoard's writer thread every epoch,
        and the GIL hand-offs cost ~0.2 ms (a quarter of a seed epoch; benchmarks/, row 1).
        TensorBoard is as live; a crash or kill -9 loses at most the losses after the last
        checkpoint, which a resumed run redoes anyway. The kept tensors become floats here, in
        one transfer: one device sync a call, none per epoch."""
        if self._unlogged:
            values = iter(torch.stack([v for _, losses in self._unlogged for v in losses.values()]).tolist())
            rows = [(step, {name: next(values) for name in losses}) for step, losses in self._unlogged]
            for logger in self.loggers:
                for step, metrics in rows:
                    logger.log_metrics(metrics, step=step)
        for logger in self.loggers:
            logger.save()
        self._unlogged, self._next_log = [], time.monotonic() + 1.0

    def configure_optimizers(self):
        optimizer = partial_of(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = partial_of(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


PARTIALS: dict[str, partial] = {}  # partial_of's, by the config's repr


def partial_of(config: dict) -> partial:
    """The `_partial_` of a resolved optimizer or scheduler config, instantiated once per config
    and process: Hydra's instantiate takes ~1 ms, and a population's writers make two optimizers
    for each of hundreds of members (stepped)."""
    key = repr(config)
    if key not in PARTIALS:
        PARTIALS[key] = instantiate(config, _convert_="all")
    return PARTIALS[key]


def stepped(module, epochs: int) -> tuple:
    """(optimizer, lr scheduler or None) of a Regressor's configure_optimizers, the scheduler
    stepped once an epoch for `epochs` epochs, as a single run steps it (the optimizer's lr is
    the scheduler's): what a single run's checkpoint after `epochs` epochs holds of them."""
    configured = module.configure_optimizers()
    if not isinstance(configured, dict):
        return configured, None
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    for _ in range(epochs):
        optimizer.step()  # no gradients, so no change: torch's scheduler warns unless it was called
        scheduler.step()
    return optimizer, scheduler


def load_regressor(path):
    """(Regressor, epochs trained) from a checkpoint, on the CPU, in the dtype it was saved in
    (float64 after trainer.precision=64), so its predictions are those the run computed."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        module = Regressor(**checkpoint["hyper_parameters"])
        state = checkpoint["state_dict"]
        module.to(next(v.dtype for v in state.values() if v.is_floating_point()))
        module.load_state_dict(state)
    except Exception as error:  # truncated, foreign or from an incompatible version
        reason = str(error).splitlines()[0][:200] if str(error) else ""
        raise ConfigError(f"ckpt: {path} is not a readable hydrafit checkpoint "
                          f"({type(error).__name__}{': ' + reason if reason else ''})") from None
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    return module.eval(), progress.get("total", {}).get("processed", checkpoint["epoch"])
