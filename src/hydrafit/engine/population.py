"""Populations: the jobs of a sweep whose configs differ only in keys that can be vectorised,
trained as one stacked model in one Lightning fit (hydra/launcher=vectorized).

    hydrafit-train -m hydra/launcher=vectorized optimizer.lr=0.001,0.003,0.01,0.03 seed=range(1,31)

Each member is built exactly as its single run builds it (hydrafit.engine.single.build_model: the
same seed, data noise, scaling, initial weights and shuffling); the members' parameters are then
stacked along a leading member dimension, one stack per architecture (hydrafit.engine.stacked),
and trained together through vmap, each with its own loss, optimizer state, hyperparameters,
learning-rate schedule, gradient clipping and number of epochs (hydrafit.engine.memberwise).
Why: a small net's step costs little next to Lightning's per-epoch work (~1-2 ms an epoch),
which a population pays once for all its members. fit returns an Outcome;
hydrafit.report.member writes each member's run directory from it.
"""
from __future__ import annotations

import functools
import itertools
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from hydrafit.compat.lightning import fit_state
from hydrafit.compat.tensorboard import fast_event_checksums
from hydrafit.config.errors import refuse
from hydrafit.config.view import RunView
from hydrafit.engine.batches import MemberSteps, PopulationBatches
from hydrafit.engine.callbacks import EpochProgressBar, GracefulStop, NoProfiler
from hydrafit.engine.memberwise import KINDS, Memberwise, clip_gradients, lr_table
from hydrafit.engine.outcome import Outcome, restore_state, saved_state
from hydrafit.engine.pbt import Exploitation
from hydrafit.engine.stacked import Stack, architectures, core, scaling_table
from hydrafit.engine.startup import quiet_lightning
from hydrafit.models import set_attribute
from hydrafit.report.checkpoint import AtomicCheckpointIO
from hydrafit.sweeps.records import PBT_STATE


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


class Population(pl.LightningModule):
    """The members' nets stacked into one LightningModule, one stack per architecture
    (engine.stacked; `order`: the members it was given, each architecture's consecutive). Each
    step evaluates every member on its own mini-batch (vmap), sums the members' losses for one
    backward (members share no parameter, so each gets its own gradient, clipped by its own
    trainer.gradient_clip_val) and keeps each member's loss for its train/loss; after each
    epoch, each member's val/loss on its own validation rows. A member whose epoch loss is not
    finite is frozen (memberwise.Memberwise) and its last periodic state kept, as
    StopOnDivergence and the checkpoints do in a single run; a member that reaches its own
    trainer.max_epochs is frozen with its final state kept."""

    automatic_optimization = False

    def __init__(self, members: list[Member], every_n_epochs: int = 0, keeps_best: bool = True, pruning=None,
                 pbt=None):
        super().__init__()
        groups = architectures([core(m.module) for m in members])
        self.order = [k for group in groups for k in group]  # the population's member i is members[order[i]]
        members = [members[k] for k in self.order]
        self.pruning = pruning and pruning.reordered(self.order)  # sweeps.pruning.MemberPruning, or None
        nets = [core(m.module) for m in members]
        scaling = scaling_table([m.module.hparams.scaling for m in members])
        self.scaling = scaling or {}
        self.stacks, self.spans, tensors = [], [], []
        start = 0
        for group in groups:
            span = range(start, start + len(group))
            stack = Stack(nets[start], scaled=scaling is not None)
            self.stacks.append(stack)
            self.spans.append((span.start, span.stop))
            tensors.append([torch.stack([dict(nets[k].named_parameters())[n].detach() for k in span]) for n in stack.names])
            for i, name in enumerate(stack.buffer_names):
                self.register_buffer(f"stack{len(self.stacks) - 1}_buffer{i}",
                                     torch.stack([dict(nets[k].named_buffers())[name] for k in span]))
            start = span.stop
        self.stacked = nn.ParameterList(nn.Parameter(t) for group in tensors for t in group)
        self.register_buffer("active", torch.ones(len(members), dtype=torch.bool), persistent=False)
        self.settings = [OmegaConf.to_container(m.cfg.optimizer, resolve=True) for m in members]
        self.kind = KINDS[self.settings[0]["_target_"]]
        views = [m.view for m in members]
        self.seeds = [v.seed for v in views]
        self.max_epochs = torch.tensor([v.max_epochs for v in views])
        self.ends = set(self.max_epochs.tolist())  # the epochs some member ends at (finish)
        self.lrs = lr_table([m.module for m in members], self.max_epochs.tolist())
        self.clip = torch.tensor([v.gradient_clip_val or math.inf for v in views])
        self.clip_algorithm = views[0].gradient_clip_algorithm if any(v.gradient_clip_val for v in views) else None
        self.batch_size, self.steps_per_batch = views[0].batch_size, views[0].steps_per_batch
        self.data = {name: torch.stack([getattr(m.datamodule, name) for m in members])
                     for name in ("x_train", "y_train", "x_val", "y_val")}
        self.pbt = pbt  # engine.pbt.Exploitation (hparams_search=pbt) or Replay (pbt_replay=), or None
        if self.pbt is not None and len(self.stacks) > 1:
            refuse("hparams_search=pbt: the members must share one net (a copied member's weights must fit it)")
        if self.pbt is not None and self.lrs is not None:
            refuse("scheduler: PBT's explored values are the members' schedule; use scheduler=none with "
                   "hparams_search=pbt")
        metrics = {pruning and pruning.metric, pbt and pbt.metric}
        if "truth/rmse" in metrics:  # where a single run computes it (metrics)
            grids = [m.datamodule.grid() for m in members]
            self.data |= {"grid": torch.stack(grids),
                          "truth": torch.stack([m.datamodule.truth(g) for m, g in zip(members, grids)])}
        self.every_n_epochs, self.keeps_best = every_n_epochs, keeps_best
        self.losses: list[torch.Tensor] = []
        self.val_losses: list[torch.Tensor] = []
        self.diverged: dict[int, tuple[int, float]] = {}
        self.finished: dict[int, int] = {}
        self.pruned: dict[int, str] = {}
        self.final: dict[int, dict] = {}
        self.kept: dict[int, dict] = {}
        self.best: dict[int, dict] = {}
        self.best_loss = torch.full((len(members),), math.inf)
        self._snapshot: dict | None = None
        self.state_path: Path | None = None  # a PBT run's population checkpoint (fit)
        self._saving = False

    __setattr__ = set_attribute

    def stack_tensors(self) -> list[tuple[dict, dict]]:
        """(parameters, buffers) of each stack, by name."""
        out, params = [], iter(self.stacked)
        for g, stack in enumerate(self.stacks):
            p = {n: next(params) for n in stack.names}
            out.append((p, {n: getattr(self, f"stack{g}_buffer{i}") for i, n in enumerate(stack.buffer_names)}))
        return out

    def member_losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's (loss to minimise, MSE) on its own batch: [members] each."""
        results = []
        for stack, (a, b), (params, buffers) in zip(self.stacks, self.spans, self.stack_tensors()):
            scaling = {k: v[a:b] for k, v in self.scaling_.items()}
            results.append(stack.member_losses(params, buffers, scaling, x[a:b], y[a:b]))
        if len(results) == 1:
            return results[0]
        return torch.cat([r[0] for r in results]), torch.cat([r[1] for r in results])

    def train_dataloader(self) -> PopulationBatches:
        """The members' data and own tensors on the training device, in the precision's dtype."""
        device = self.trainer.strategy.root_device
        data = {k: self.trainer.precision_plugin.convert_input(v.to(device)) for k, v in self.data.items()}
        dtype = data["x_train"].dtype
        self.scaling_ = {k: v.to(device, dtype) for k, v in self.scaling.items()}
        self.val = (data["x_val"], data["y_val"]) if data["x_val"].shape[1] else None
        self.train, self.truth = (data["x_train"], data["y_train"]), (data.get("grid"), data.get("truth"))
        self.clip = self.clip.to(device, dtype)
        return PopulationBatches(data["x_train"], data["y_train"], self.batch_size, self.seeds, self.steps_per_batch)

    def configure_optimizers(self):
        params, groups = iter(self.stacked), []
        for stack, span in zip(self.stacks, self.spans):
            groups.append({"params": [next(params) for _ in stack.names], "members": span})
        return Memberwise(groups, self.kind, self.settings, active=self.active)

    def training_step(self, batch: MemberSteps, batch_idx: int) -> None:
        optimizer, max_steps = self.optimizers(), self.trainer.max_steps
        left = len(batch) if max_steps < 0 else max_steps - self.global_step
        for x, y in itertools.islice(batch, left):  # as models.Regressor.training_step
            optimizer.step(closure=partial(self.backward_loss, optimizer, x, y))

    def backward_loss(self, optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad()
        losses, mse = self.member_losses(x, y)
        self._loss_sum = self._loss_sum + mse.detach() * x.shape[1]
        self._loss_count += x.shape[1]
        self.manual_backward(losses.sum())
        if self.clip_algorithm is not None:
            for (a, b), (params, _) in zip(self.spans, self.stack_tensors()):
                clip_gradients(list(params.values()), self.clip[a:b], self.clip_algorithm)
        return losses.sum()

    def on_train_epoch_start(self) -> None:
        self._loss_sum, self._loss_count = 0.0, 0
        if self.lrs is not None:
            self.optimizers().optimizer.set_lr(self.lrs[self.current_epoch])

    def on_train_epoch_end(self) -> None:
        if not self._loss_count:
            return
        loss = self._loss_sum / self._loss_count
        self.losses.append(loss)
        if self.val is not None:
            with torch.no_grad():
                self.val_losses.append(self.member_losses(*self.val)[1])
        bad = ~torch.isfinite(loss) & self.active
        if bad.any():  # one device sync an epoch, as StopOnDivergence's float() in a single run
            self.freeze(bad, loss)
        self.trainer.callback_metrics["train/loss"] = loss[self.active].mean() if self.active.any() else loss.mean()
        periodic = self.every_n_epochs and (self.current_epoch + 1) % self.every_n_epochs == 0
        if periodic:
            self._snapshot = self.snapshot()  # the periodic checkpoint of a single run
            if self.keeps_best:
                self.keep_best(loss.cpu())
        if self.current_epoch + 1 in self.ends:  # else no member ends: no device sync this epoch
            self.finish((self.max_epochs == self.current_epoch + 1) & self.active.cpu())
        self.prune()
        if self.pbt is not None and self.pbt.after_epoch(self, self.current_epoch + 1) and self.state_path:
            self.save_population()

    def save_population(self) -> None:
        """The whole population to state_path, for resume_sweep= to continue from (a PBT run)."""
        self._saving = True
        try:
            self.trainer.save_checkpoint(self.state_path)
        finally:
            self._saving = False

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._saving:  # not the members' snapshots (lightning_state), which Lightning dumps too
            checkpoint["population"] = saved_state(self)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_state(self, checkpoint["population"])

    def finish(self, done: torch.Tensor) -> None:
        """Members that reached their own trainer.max_epochs (or were pruned) before the fit's end
        stop updating, their state kept as a single run's is when it ends."""
        members = done.nonzero().flatten().tolist()
        if not members or self.current_epoch + 1 == self.trainer.max_epochs:
            return
        snapshot = self.snapshot()
        for k in members:
            self.finished[k], self.final[k] = self.current_epoch + 1, self.member_state(snapshot, k)
        self.active &= ~done.to(self.active.device)
        self.optimizers().optimizer.frozen = True
        if not self.active.any():
            self.trainer.should_stop = True

    def prune(self) -> None:
        """hparams_search=optuna with a pruner: every callbacks.optuna_pruning.every_n_epochs
        epochs, each active member's metric goes to its own trial (sweeps.pruning.MemberPruning),
        and the members Optuna prunes stop, as OptunaPruning stops a single run."""
        epoch = self.current_epoch + 1
        if self.pruning is None or epoch % self.pruning.every_n_epochs:
            return
        values, active = self.metric(self.pruning.metric).tolist(), self.active.tolist()
        pruned = self.pruning.judge(epoch, {k: v for k, v in enumerate(values) if active[k]})
        if pruned:
            self.pruned |= pruned
            self.finish(torch.tensor([k in pruned for k in range(len(values))]))

    @torch.no_grad()
    def metric(self, name: str) -> torch.Tensor:
        """Each member's `name` now ([members]), as hydrafit.metrics computes it for a single run."""
        if name == "train/loss":
            return self.losses[-1]
        if name in ("val/loss", "val/mse"):  # the val/loss of this epoch is the val/mse of its weights
            return self.val_losses[-1]
        if name == "train/mse":
            return self.member_losses(*self.train)[1]
        return self.member_losses(*self.truth)[1].sqrt()  # truth/rmse

    def keep_best(self, loss: torch.Tensor) -> None:
        """Each member's best.ckpt state, as a single run's Checkpoint (monitor train/loss,
        save_top_k 1) keeps it: the periodic save whose epoch loss is the lowest so far."""
        better = (loss < self.best_loss) & self.active.cpu()
        for k in better.nonzero().flatten().tolist():
            self.best[k] = self.member_state(self._snapshot, k)
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
        """Member k's part of a snapshot: its own net's tensors and optimizer state."""
        g = self.stack_of(k)
        j = k - self.spans[g][0]
        return {"template": snapshot["template"], "optimizer": snapshot["optimizer"][k],
                "params": {n: v[j].clone() for n, v in snapshot["params"][g].items()}}

    def stack_of(self, k: int) -> int:
        return next(g for g, (a, b) in enumerate(self.spans) if a <= k < b)

    def stacked_state(self) -> list[dict]:
        """Each stack's parameters and buffers by name, copied to the CPU."""
        return [{n: t.detach().cpu().clone() for n, t in itertools.chain(params.items(), buffers.items())}
                for params, buffers in self.stack_tensors()]

    def lightning_state(self) -> dict:
        """Lightning's own checkpoint of the fit as it stands (epoch, global step, the loops'
        progress), without this module's weights and optimizer: what each member's one-member
        checkpoint starts from, so that resume= continues it as Lightning continues a single run."""
        return fit_state(self.trainer)

    def on_train_end(self) -> None:
        if isinstance(self.pbt, Exploitation):  # what the lineage figure colours each member by
            self.pbt.final_scores = [float(s) for s in self.metric(self.pbt.metric).cpu()]
        snapshot = self.snapshot()
        for k in range(len(self.seeds)):
            self.final.setdefault(k, self.member_state(snapshot, k))


def fit(members: list[Member], sweep_dir: Path, spare_core: bool = False, pruning=None, pbt=None) -> Outcome:
    """Train the members as one population in one Lightning fit on the configured trainer.
    `pruning`: the members' Optuna trials (sweeps.pruning.MemberPruning), in the members' order.
    `pbt`: engine.pbt.Exploitation (a PBT run: the fit saves the population to the sweep
    directory at each of its intervals, sweeps.records.PBT_STATE, and continues from there if it
    exists) or engine.pbt.Replay (pbt_replay=).
    `spare_core`: another process works meanwhile (the launcher's record_members), so torch
    uses one thread fewer: its threads wait for each other at every operation, and one that
    shares its core with that process made a 480-member fit 3x slower on this project's CPU."""
    quiet_lightning()  # as a single run: no advertising tip
    fast_event_checksums()  # once: the members' writers, forked after the fit, inherit it

    cfg, view = members[0].cfg, members[0].view
    # the callbacks that steer the fit; the population does the others' work (report.member)
    callbacks = [instantiate(cfg.callbacks[k]) for k in ("graceful_stop", "progress_bar") if k in view.callbacks.names]
    population = Population(members, pruning=pruning, pbt=pbt,
                            every_n_epochs=view.callbacks.checkpoint_every,
                            keeps_best=view.callbacks.keeps_best)
    extra = {} if view.profiler else {"profiler": NoProfiler()}
    resume = None
    if pbt is not None and pbt.resumable:
        extra["plugins"] = [AtomicCheckpointIO()]  # a kill while saving leaves the previous one
        population.state_path = sweep_dir / PBT_STATE
        resume = population.state_path if population.state_path.exists() else None
    # the population trains as long as its longest member; it clips each member's gradients itself
    trainer = instantiate(cfg.trainer, default_root_dir=str(sweep_dir), callbacks=callbacks, logger=False,
                          enable_checkpointing=False, max_epochs=int(population.max_epochs.max()),
                          gradient_clip_val=None,
                          enable_progress_bar=any(isinstance(c, EpochProgressBar) for c in callbacks), **extra)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads - spare_core))
    started, start = time.time(), time.perf_counter()
    try:
        trainer.fit(population, ckpt_path=resume, weights_only=False)  # our own file: dicts of states
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    stopper = next((c for c in callbacks if isinstance(c, GracefulStop) and c.stopped), None)
    batches = trainer.train_dataloader
    order = population.order
    mine = {i: k for i, k in enumerate(order)}  # the population's member i is the caller's member k

    def by_member(d: dict) -> dict:
        return {mine[i]: v for i, v in d.items()}

    def columns(rows: list) -> torch.Tensor:  # [epochs, members] in the caller's order
        return torch.stack(rows).cpu()[:, torch.tensor(order).argsort()]

    return Outcome(
        final=by_member(population.final),
        losses=columns(population.losses) if population.losses else torch.empty(0, len(members)),
        val_losses=columns(population.val_losses) if population.val_losses else None,
        diverged=by_member(population.diverged), finished=by_member(population.finished),
        pruned=by_member(population.pruned),
        kept=by_member(population.kept), best=by_member(population.best),
        epochs=trainer.current_epoch, steps_per_epoch=batches.steps_per_epoch(), seconds=seconds, started=started,
        interrupted=stopper.received if stopper else None, pbt=population.pbt and population.pbt.state())


def load_results(members: list[Member], outcome: Outcome) -> None:
    """Each member's final weights into its own net (the single-run module metrics, plots and
    checkpoints are made from)."""
    for k, member in enumerate(members):
        core(member.module).load_state_dict(outcome.final[k]["params"])
