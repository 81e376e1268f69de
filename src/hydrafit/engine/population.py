"""Populations: the jobs of a sweep whose configs differ only in keys that can be vectorised,
trained as one stacked model in one Lightning fit (hydra/launcher=vectorized).

    hydrafit-train -m hydra/launcher=vectorized optimizer.lr=0.001,0.003,0.01,0.03 seed=range(1,31)

Each member is built exactly as its single run builds it (hydrafit.engine.single.build_model: the
same seed, data noise, initial weights and shuffling); the members' parameters are then stacked
along a leading member dimension (torch.func.stack_module_state) and trained together through
vmap(functional_call), each with its own loss, optimizer state and hyperparameters
(hydrafit.engine.memberwise). Why: a small net's step costs little next to Lightning's per-epoch
work (~1-2 ms an epoch), which a population pays once for all its members. fit returns an
Outcome; hydrafit.report.member writes each member's run directory from it.
"""
from __future__ import annotations

import copy
import itertools
import math
import time
import functools
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from hydrafit.compat.lightning import fit_state
from hydrafit.compat.tensorboard import fast_event_checksums
from hydrafit.config.view import RunView
from hydrafit.data import epoch_order
from hydrafit.engine.callbacks import EpochProgressBar, GracefulStop, NoProfiler
from hydrafit.engine.memberwise import KINDS, Memberwise
from hydrafit.engine.startup import quiet_lightning
from hydrafit.models import set_attribute


@dataclass
class Member:
    """One job of a population: its config (without `hydra`), and the datamodule and Regressor
    its single run builds (engine.single.build_model); the population trains copies of the net's
    weights, and the Regressor's net gets the member's final weights back (load_results)."""

    cfg: DictConfig
    datamodule: object
    module: nn.Module

    @functools.cached_property
    def view(self) -> RunView:
        return RunView.of(self.cfg)


class MemberSteps:
    """A Lightning batch of a population: consecutive mini-batch steps, each member's points
    taken in its own order (`order`: [members, points] indexes), or the full batch once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor | None = None, batch_size: int = 0):
        self.x, self.y, self.order, self.batch_size = x, y, order, batch_size

    def __len__(self) -> int:
        return 1 if self.order is None else math.ceil(self.order.shape[1] / self.batch_size)

    def __iter__(self):
        if self.order is None:
            yield self.x, self.y
            return
        for start in range(0, self.order.shape[1], self.batch_size):
            idx = self.order[:, start:start + self.batch_size].unsqueeze(-1)
            yield self.x.gather(1, idx), self.y.gather(1, idx)


class PopulationBatches:
    """data.TensorBatches for a population: x, y are [members, points, 1]; each member's epoch
    order is the one its single run draws (data.epoch_order with its own seed)."""

    batch_sampler = None

    def __init__(self, x, y, batch_size: int | None, seeds: list[int], steps_per_batch: int):
        self.x, self.y, self.seeds, self.epoch, self.steps_per_batch = x, y, seeds, 0, steps_per_batch
        n = x.shape[1]
        self.full_batch = batch_size is None or batch_size >= n
        self.batch_size = n if self.full_batch else batch_size

    @property
    def sampler(self) -> PopulationBatches:
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def steps_per_epoch(self) -> int:
        return 1 if self.full_batch else math.ceil(self.x.shape[1] / self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.steps_per_epoch() / self.steps_per_batch)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        if self.full_batch:
            yield MemberSteps(self.x, self.y)
            return
        n = self.x.shape[1]
        order = torch.stack([epoch_order(s, epoch, n) for s in self.seeds]).to(self.x.device)
        group = self.batch_size * self.steps_per_batch
        for start in range(0, n, group):
            yield MemberSteps(self.x, self.y, order[:, start:start + group], self.batch_size)


@dataclass
class Outcome:
    """What a population's fit leaves for its members' run directories."""

    params: dict            # name -> [members, ...] final parameters and buffers, on the CPU
    losses: torch.Tensor    # [epochs, members] train/loss of each epoch
    diverged: dict          # member -> (epoch, loss) where its loss stopped being finite
    kept: dict              # diverged member -> its last finite checkpoint (or absent)
    best: dict              # member -> its state at the periodic save of lowest train/loss (best.ckpt)
    template: dict          # Lightning's checkpoint of the fit's end, minus model and optimizer
    optimizer: Memberwise
    epochs: int
    steps_per_epoch: int
    seconds: float
    interrupted: str | None = None  # the signal that stopped the fit

    def epochs_of(self, k: int) -> int:
        """The epochs member k trained: up to where it diverged, or all of the fit's."""
        return self.diverged[k][0] if k in self.diverged else self.epochs


class Population(pl.LightningModule):
    """The members' nets stacked into one LightningModule. Each step evaluates every member on
    its own mini-batch (vmap over functional_call), sums the members' MSEs for one backward
    (members share no parameter, so each gets its own gradient) and keeps each member's loss
    for its train/loss. A member whose epoch loss is not finite is frozen (memberwise.Memberwise)
    and its last periodic state kept, as StopOnDivergence and the checkpoints do in a single run."""

    automatic_optimization = False

    def __init__(self, members: list[Member], every_n_epochs: int = 0, keeps_best: bool = True):
        super().__init__()
        nets = [m.module.net for m in members]
        params, buffers = stack_module_state(nets)
        self.names, self.buffer_names = list(params), list(buffers)
        self.stacked = nn.ParameterList(params.values())
        for i, b in enumerate(buffers.values()):
            self.register_buffer(f"stacked_buffer_{i}", b)
        self.register_buffer("active", torch.ones(len(members), dtype=torch.bool), persistent=False)
        object.__setattr__(self, "base", copy.deepcopy(nets[0]).to("meta"))  # not a submodule
        self.settings = [OmegaConf.to_container(m.cfg.optimizer, resolve=True) for m in members]
        self.kind = KINDS[self.settings[0]["_target_"]]
        self.seeds = [m.view.seed for m in members]
        self.batch_size, self.steps_per_batch = members[0].view.batch_size, members[0].view.steps_per_batch
        self.x = torch.stack([m.datamodule.x_train for m in members])
        self.y = torch.stack([m.datamodule.y_train for m in members])
        self.every_n_epochs, self.keeps_best = every_n_epochs, keeps_best
        self.losses: list[torch.Tensor] = []
        self.diverged: dict[int, tuple[int, float]] = {}
        self.kept: dict[int, dict] = {}
        self.best: dict[int, dict] = {}
        self.best_loss = torch.full((len(members),), math.inf)
        self._snapshot: dict | None = None
        self.template: dict = {}

    __setattr__ = set_attribute

    def member_losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each member's MSE on its own batch: [members]."""
        params = dict(zip(self.names, self.stacked))
        buffers = dict(zip(self.buffer_names, (getattr(self, f"stacked_buffer_{i}") for i in range(len(self.buffer_names)))))

        def loss(p, b, x, y):
            return nn.functional.mse_loss(functional_call(self.base, (p, b), (x,)), y)
        return vmap(loss)(params, buffers, x, y)

    def train_dataloader(self) -> PopulationBatches:
        device = self.trainer.strategy.root_device
        x, y = self.trainer.precision_plugin.convert_input((self.x.to(device), self.y.to(device)))
        return PopulationBatches(x, y, self.batch_size, self.seeds, self.steps_per_batch)

    def configure_optimizers(self):
        return Memberwise(self.stacked, self.kind, self.settings, active=self.active)

    def training_step(self, batch: MemberSteps, batch_idx: int) -> None:
        optimizer, max_steps = self.optimizers(), self.trainer.max_steps
        left = len(batch) if max_steps < 0 else max_steps - self.global_step
        for x, y in itertools.islice(batch, left):  # as models.Regressor.training_step
            optimizer.step(closure=partial(self.backward_loss, optimizer, x, y))

    def backward_loss(self, optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        losses = self.member_losses(x, y)
        self._loss_sum = self._loss_sum + losses.detach() * x.shape[1]
        self._loss_count += x.shape[1]
        self.manual_backward(losses.sum())
        return losses.sum()

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_count = 0.0, 0

    def on_train_epoch_end(self) -> None:
        if not self._loss_count:
            return
        loss = self._loss_sum / self._loss_count
        self.losses.append(loss)
        bad = ~torch.isfinite(loss) & self.active
        if bad.any():  # one device sync an epoch, as StopOnDivergence's float() in a single run
            self.freeze(bad, loss)
        self.trainer.callback_metrics["train/loss"] = loss[self.active].mean() if self.active.any() else loss.mean()
        if self.every_n_epochs and (self.current_epoch + 1) % self.every_n_epochs == 0:
            self._snapshot = self.snapshot()  # the periodic checkpoint of a single run
            if self.keeps_best:
                self.keep_best(loss.cpu())

    def keep_best(self, loss: torch.Tensor) -> None:
        """Each member's best.ckpt state, as a single run's Checkpoint (monitor train/loss,
        save_top_k 1) keeps it: the periodic save whose epoch loss is the lowest so far."""
        better = (loss < self.best_loss) & self.active.cpu()
        for k in better.nonzero().flatten().tolist():
            state = self.member_state(self._snapshot, k)
            self.best[k] = state | {"params": {n: v.clone() for n, v in state["params"].items()}}
        self.best_loss = torch.where(better, loss, self.best_loss)

    def freeze(self, bad: torch.Tensor, loss: torch.Tensor) -> None:
        """Members whose loss just turned NaN/inf stop updating; each keeps its last periodic state."""
        for k in bad.nonzero().flatten().tolist():
            self.diverged[k] = (self.current_epoch + 1, float(loss[k]))
            if self._snapshot is not None:
                self.kept[k] = self.member_state(self._snapshot, k)
        self.active &= ~bad
        self.optimizers().optimizer.frozen = True
        if not self.active.any():
            self.trainer.should_stop = True

    def snapshot(self) -> dict:
        """Everything a member's checkpoint needs, as it is now, for every member."""
        optimizer = self.optimizers().optimizer
        return {"template": self.lightning_state(), "params": self.stacked_state(),
                "optimizer": {k: optimizer.member_state(k) for k in range(len(self.seeds))}}

    def member_state(self, snapshot: dict, k: int) -> dict:
        return {"template": snapshot["template"], "params": {n: v[k] for n, v in snapshot["params"].items()},
                "optimizer": snapshot["optimizer"][k]}

    def stacked_state(self) -> dict:
        buffers = (getattr(self, f"stacked_buffer_{i}") for i in range(len(self.buffer_names)))
        return {n: t.detach().cpu().clone() for n, t in
                zip(self.names + self.buffer_names, itertools.chain(self.stacked, buffers))}

    def lightning_state(self) -> dict:
        """Lightning's own checkpoint of the fit as it stands (epoch, global step, the loops'
        progress), without this module's weights and optimizer: what each member's one-member
        checkpoint starts from, so that resume= continues it as Lightning continues a single run."""
        return fit_state(self.trainer)

    def on_train_end(self) -> None:
        self.template = self.lightning_state()


def fit(members: list[Member], sweep_dir: Path, spare_core: bool = False) -> Outcome:
    """Train the members as one population in one Lightning fit on the configured trainer.
    `spare_core`: another process works meanwhile (the launcher's record_members), so torch
    uses one thread fewer: its threads wait for each other at every operation, and one that
    shares its core with that process made a 480-member fit 3x slower on this project's CPU."""
    quiet_lightning()  # as a single run: no advertising tip
    fast_event_checksums()  # once: the members' writers, forked after the fit, inherit it

    cfg, view = members[0].cfg, members[0].view
    # the callbacks that steer the fit; the population does the others' work (report.member)
    callbacks = [instantiate(cfg.callbacks[k]) for k in ("graceful_stop", "progress_bar") if k in view.callbacks.names]
    population = Population(members, every_n_epochs=view.callbacks.checkpoint_every,
                            keeps_best=view.callbacks.keeps_best)
    profiler = {} if view.profiler else {"profiler": NoProfiler()}
    trainer = instantiate(cfg.trainer, default_root_dir=str(sweep_dir), callbacks=callbacks, logger=False,
                          enable_checkpointing=False,
                          enable_progress_bar=any(isinstance(c, EpochProgressBar) for c in callbacks), **profiler)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads - spare_core))
    start = time.perf_counter()
    try:
        trainer.fit(population)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    stopper = next((c for c in callbacks if isinstance(c, GracefulStop) and c.stopped), None)
    batches = trainer.train_dataloader
    return Outcome(
        params=population.stacked_state(),  # no epoch at all when Ctrl-C came before the first ended
        losses=torch.stack(population.losses).cpu() if population.losses else torch.empty(0, len(members)),
        diverged=population.diverged, kept=population.kept, best=population.best,
        template=population.template,
        optimizer=trainer.optimizers[0], epochs=trainer.current_epoch,
        steps_per_epoch=batches.steps_per_epoch(), seconds=seconds,
        interrupted=stopper.received if stopper else None)


def load_results(members: list[Member], outcome: Outcome) -> None:
    """Each member's final weights into its own net (the single-run module metrics, plots and
    checkpoints are made from)."""
    for k, member in enumerate(members):
        member.module.net.load_state_dict({n: v[k] for n, v in outcome.params.items()})
