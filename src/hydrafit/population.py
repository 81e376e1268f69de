"""Populations: the jobs of a sweep whose configs differ only in keys that can be vectorised,
trained as one stacked model in one Lightning fit (hydra/launcher=vectorized).

    hydrafit-train -m hydra/launcher=vectorized optimizer.lr=0.001,0.003,0.01,0.03 seed=range(1,31)

Each member is built exactly as its single run builds it (hydrafit.train.build_model: the same
seed, data noise, initial weights and shuffling); the members' parameters are then stacked along
a leading member dimension (torch.func.stack_module_state) and trained together through
vmap(functional_call), each with its own loss, optimizer state and hyperparameters
(hydrafit.memberwise). Why: a small net's step costs little next to Lightning's per-epoch work
(~1-2 ms an epoch here), which a population pays once for all its members.

The launcher (hydra_plugins/hydrafit_sweeper/vectorized_launcher.py) then runs each job through
Hydra's own job machinery with `member_task`, which writes the member's run directory as a
single run would: metrics.json, fit.png, TensorBoard, checkpoints/last.ckpt, train.log.
"""
from __future__ import annotations

import copy
import itertools
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf._utils import get_omega_conf_dumper
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from hydrafit.data import epoch_order
from hydrafit.memberwise import HYPERPARAMETERS, KINDS, Memberwise
from hydrafit.models import set_attribute

log = logging.getLogger(__name__)

# Keys whose values may differ between the members of a population (besides the optimizer's
# hyperparameters, memberwise.HYPERPARAMETERS): each member builds its own data and net from them,
# and none changes a tensor's shape.
VECTORIZED = ("seed", "model.init", "dataset.noise_std", "dataset.coefficients", "dataset.x_range",
              "dataset.amplitude", "dataset.frequency", "dataset.phase", "dataset.expr")
# The callbacks a population does the work of, for each member (write_member); any other keeps
# a job out of populations.
CALLBACKS = ("fit_plot", "metrics_file", "model_checkpoint", "stop_on_divergence", "graceful_stop",
             "progress_bar")


def not_vectorized(cfg: DictConfig, idle: tuple = ()) -> str | None:
    """Why the job `cfg` (its composed config, without `hydra`) cannot join a population, or None.
    `idle`: callbacks that do nothing in this sweep (an Optuna search's pruning without a pruner)."""
    kind = KINDS.get(str(cfg.optimizer.get("_target_")))
    if kind is None:
        return f"optimizer {cfg.optimizer.get('_target_')} is not vectorised (only Adam, AdamW, SGD)"
    extra = [k for k in cfg.optimizer if not k.startswith("_") and k not in HYPERPARAMETERS[kind]]
    if extra:
        return f"optimizer.{extra[0]} is not vectorised"
    if cfg.get("scheduler"):
        return "a scheduler is not vectorised"
    if cfg.dataset.get("standardize"):
        return "dataset.standardize=true (per-member scaling) is not vectorised"
    trainer = cfg.trainer
    if trainer.get("gradient_clip_val") or trainer.get("accumulate_grad_batches", 1) != 1:
        return "gradient clipping and accumulation mix members (global norms): not vectorised"
    if "ddp" in str(trainer.get("strategy", "")) or trainer.get("devices", 1) not in (1, "1"):
        return "a population trains on one device"
    other = [k for k in (cfg.callbacks or {}) if k not in CALLBACKS + tuple(idle)]
    if other:
        return f"callbacks.{other[0]} is not vectorised"
    return None


def population_key(cfg: DictConfig) -> str:
    """What members of one population share: the config without its vectorised keys."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    kind = KINDS[str(cfg.optimizer._target_)]
    for key in (*VECTORIZED, *(f"optimizer.{k}" for k in HYPERPARAMETERS[kind])):
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node.get(p) or {}
        node.pop(leaf, None)
    return json.dumps(tree, sort_keys=True, default=str)


def flat(tree, prefix: str = "") -> dict:
    """{'model': {'hidden_dims': [8]}} -> {'model.hidden_dims': [8]}."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}.{key}".lstrip(".")).items()}


def split_keys(keys: list[str]) -> list[str]:
    """The config keys whose values differ between population keys (why jobs were split)."""
    flats = [flat(json.loads(k)) for k in keys]
    names = dict.fromkeys(n for f in flats for n in f)
    return [n for n in names if len({json.dumps(f.get(n), default=str) for f in flats}) > 1]


def group(configs: list[DictConfig | None], max_population: int | None,
          idle: tuple = ()) -> list[tuple[list[int], str | None]]:
    """Populations of the jobs, as (job indexes, None) or, for a job that runs alone as an
    ordinary run, ([index], why). A None config (one that does not compose or validate) runs
    alone: the ordinary path records its failure."""
    groups: dict[str, list[int]] = {}
    alone: list[tuple[list[int], str | None]] = []
    for i, cfg in enumerate(configs):
        why = "its config is invalid" if cfg is None else not_vectorized(cfg, idle)
        if why:
            alone.append(([i], why))
        else:
            groups.setdefault(population_key(cfg), []).append(i)
    size = max_population or math.inf
    chunks = [(jobs[s:s + int(min(size, len(jobs)))], None) for jobs in groups.values()
              for s in range(0, len(jobs), int(min(size, len(jobs))))]
    plan = sorted(chunks + alone, key=lambda c: c[0][0])
    describe(len(configs), plan, list(groups), max_population)
    return plan


def describe(n_jobs: int, plan, keys: list[str], max_population) -> None:
    """One line per population at sweep start: `vectorized: 120 jobs -> 1 population of 120`."""
    sizes = [len(jobs) for jobs, why in plan if why is None]
    text = f"vectorized: {n_jobs} jobs -> {len(sizes)} population{'s' * (len(sizes) != 1)}"
    if sizes:
        text += f" of {', '.join(map(str, sizes))}"
    if len(keys) > 1:
        text += f" (split by {', '.join(split_keys(keys))})"
    if len(sizes) > len(keys):
        text += f" (chunks of at most hydra.launcher.max_population={max_population})"
    log.info(text)
    for jobs, why in plan:
        if why is not None:
            log.info("vectorized: job #%d runs alone: %s", jobs[0], why)


@dataclass
class Member:
    """One job of a population: its config (without `hydra`), and the datamodule and Regressor
    its single run builds (train.build_model); the population trains copies of the net's
    weights, and the Regressor's net gets the member's final weights back (load_results)."""

    cfg: DictConfig
    datamodule: object
    module: nn.Module


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
    template: dict          # Lightning's checkpoint of the fit's end, minus model and optimizer
    optimizer: Memberwise
    epochs: int
    steps_per_epoch: int
    seconds: float
    interrupted: str | None = None  # the signal that stopped the fit


class Population(pl.LightningModule):
    """The members' nets stacked into one LightningModule. Each step evaluates every member on
    its own mini-batch (vmap over functional_call), sums the members' MSEs for one backward
    (members share no parameter, so each gets its own gradient) and keeps each member's loss
    for its train/loss. A member whose epoch loss is not finite is frozen (memberwise.Memberwise)
    and its last periodic state kept, as StopOnDivergence and the checkpoints do in a single run."""

    automatic_optimization = False

    def __init__(self, members: list[Member], every_n_epochs: int = 0):
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
        self.seeds = [int(m.cfg.seed) for m in members]
        data = members[0].cfg.dataset
        self.batch_size, self.steps_per_batch = data.get("batch_size"), data.get("steps_per_batch", 1)
        self.x = torch.stack([m.datamodule.x_train for m in members])
        self.y = torch.stack([m.datamodule.y_train for m in members])
        self.every_n_epochs = every_n_epochs
        self.losses: list[torch.Tensor] = []
        self.diverged: dict[int, tuple[int, float]] = {}
        self.kept: dict[int, dict] = {}
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
        checkpoint starts from, so that resume= continues it as Lightning continues a single run.
        Private: Lightning offers no public way to get this dict without writing a file."""
        state = self.trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        for key in ("state_dict", "optimizer_states", "hyper_parameters", "hparams_name"):
            state.pop(key, None)
        return state

    def on_train_end(self) -> None:
        self.template = self.lightning_state()


def fit(members: list[Member], sweep_dir: Path, spare_core: bool = False) -> Outcome:
    """Train the members as one population in one Lightning fit on the configured trainer.
    `spare_core`: another process works meanwhile (the launcher's record_members), so torch
    uses one thread fewer: its threads wait for each other at every operation, and one that
    shares its core with that process made a 480-member fit 3x slower on this project's CPU."""
    from hydra.utils import instantiate

    from hydrafit.callbacks import EpochProgressBar, GracefulStop, NoProfiler, fast_event_checksums
    from hydrafit.train import quiet_lightning

    quiet_lightning()  # as a single run: no advertising tip
    fast_event_checksums()  # once: the members' writers, forked after the fit, inherit it

    cfg = members[0].cfg
    callbacks_cfg = cfg.callbacks or {}
    callbacks = [instantiate(callbacks_cfg[k]) for k in ("graceful_stop", "progress_bar") if k in callbacks_cfg]
    checkpoint = callbacks_cfg.get("model_checkpoint")
    every = int(checkpoint.get("every_n_epochs") or 0) if checkpoint else 0
    population = Population(members, every_n_epochs=every)
    profiler = {} if cfg.trainer.get("profiler") else {"profiler": NoProfiler()}
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
        diverged=population.diverged, kept=population.kept, template=population.template,
        optimizer=trainer.optimizers[0], epochs=trainer.current_epoch,
        steps_per_epoch=batches.steps_per_epoch(), seconds=seconds,
        interrupted=stopper.received if stopper else None)


def load_results(members: list[Member], outcome: Outcome) -> None:
    """Each member's final weights into its own net (the single-run module metrics, plots and
    checkpoints are made from)."""
    for k, member in enumerate(members):
        member.module.net.load_state_dict({n: v[k] for n, v in outcome.params.items()})


def epochs_of(outcome: Outcome, k: int) -> int:
    return outcome.diverged[k][0] if k in outcome.diverged else outcome.epochs


def fit_images(members: list[Member], outcome: Outcome) -> list:
    """Each member's final fit figure as PNG, one callable a member that renders it where its run
    directory is written: on axes shared by the population (plotting.fit_png, ~20 ms an image);
    for data without a true function (dataset=csv), each as its single run draws it."""
    from hydrafit.callbacks import draw_fit, fit_arguments
    from hydrafit.plotting import fit_png, png, shared_limits

    if any(m.datamodule.truth is None for m in members):
        return [partial(lambda m, k: png(draw_fit(m.module.net, m.datamodule, epochs_of(outcome, k))), m, k)
                for k, m in enumerate(members)]
    arguments = [fit_arguments(m.module.net, m.datamodule, epochs_of(outcome, k)) for k, m in enumerate(members)]
    limits = shared_limits(arguments)
    return [partial(fit_png, a, limits) for a in arguments]


def member_task(member: Member, outcome: Outcome, k: int, size: int, image):
    """The Hydra task of population member k: writes its run directory (write_member) and
    returns its optimized metric, as hydrafit.train.main returns a single run's."""
    def task(cfg: DictConfig):
        log.info("Dataset    %s", cfg.dataset._target_)
        log.info("Model      %s, optimizer %s", cfg.model._target_, cfg.optimizer._target_)
        log.info("Trained as member %d of a population of %d in one fit of %.1f s (hydra/launcher=vectorized)",
                 k, size, outcome.seconds)
        return write_member(member, outcome, k, image)
    return task


def write_member(member: Member, outcome: Outcome, k: int, image) -> float | None:
    """Member k's run directory, as a single run leaves it: train/loss of every epoch, the fit
    image and final metrics in the logger (HPARAMS), fit.png, metrics.json, checkpoints/last.ckpt.
    Raises train.RunStopped for a diverged or interrupted member, as train() does."""
    from hydra.utils import instantiate

    from hydrafit.callbacks import (diverged_message, interrupted_message, log_fit_image, log_scalars, save_fit,
                                    write_report)
    from hydrafit.metrics import final_metrics, metric_names
    from hydrafit.train import RunStopped, log_hyperparameters, logger_configs

    cfg, datamodule, net = member.cfg, member.datamodule, member.module.net
    callbacks = cfg.callbacks or {}
    status, message, epochs = "completed", None, outcome.epochs
    run_dir = Path(cfg.trainer.default_root_dir)
    if k in outcome.diverged:
        epochs, loss = outcome.diverged[k]
        status, message = "diverged", diverged_message(loss, epochs, cfg.optimizer.get("lr"))
    elif outcome.interrupted:
        status, message = "interrupted", interrupted_message(outcome.interrupted, epochs, run_dir)
    step = epochs * outcome.steps_per_epoch
    loggers = [instantiate(c) for c in logger_configs(cfg.logger)]
    log_hyperparameters(loggers, cfg, metric_names(datamodule))
    log_scalars(loggers, "train/loss", outcome.losses[:epochs, k].tolist(),
                [(epoch + 1) * outcome.steps_per_epoch - 1 for epoch in range(epochs)])
    if "fit_plot" in callbacks:
        png = image()  # fit_images
        log_fit_image(loggers, png, step)
        save_fit(run_dir, png)
    metrics = final_metrics(net, datamodule) if status != "diverged" else {}
    if "metrics_file" in callbacks:
        write_report(Path(callbacks.metrics_file.dirpath) / "metrics.json", loggers, step, metrics, epochs,
                     outcome.seconds, status, message)
    if "model_checkpoint" in callbacks:
        save_checkpoint(member, outcome, k, Path(callbacks.model_checkpoint.dirpath))
    if status == "completed":
        save_hparams(loggers)
    for logger in loggers:
        logger.finalize("success" if status == "completed" else "failed")
    if status != "completed":
        raise RunStopped(status, message)
    value = metrics.get(cfg.optimized_metric)
    if value is not None:
        log.info("%s = %.6g  (run dir: %s)", cfg.optimized_metric, value, run_dir)
    return value


def save_hparams(loggers) -> None:
    """Each TensorBoard logger's hparams.yaml, the text its finalize("success") writes through
    OmegaConf.save (which skips an existing file): 1 ms, not 9, on this project's CPU."""
    from pytorch_lightning.loggers import TensorBoardLogger

    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            Path(logger.log_dir, logger.NAME_HPARAMS_FILE).write_text(yaml_text(dict(logger.hparams)), encoding="utf-8")


class _Dumper(getattr(yaml, "CDumper", yaml.Dumper)):
    """OmegaConf's YAML dumper (its str representer quotes 'true', '1', '1.0') on libyaml's C
    emitter where PyYAML has one."""


_Dumper.add_representer(str, get_omega_conf_dumper().str_representer)  # private: OmegaConf's quoting


def yaml_text(tree) -> str:
    """OmegaConf.to_yaml's text of `tree` (a config, or a dict of configs and plain values),
    written by _Dumper: the same text in a third of the time (2.6 ms, not 8, for a job's hydra
    node on this project's CPU; tests/test_population.py compares them). Members' .hydra/ records
    (hydra_plugins.hydrafit_sweeper.vectorized_launcher) and hparams.yaml."""
    def plain(node):
        return OmegaConf.to_container(node, enum_to_str=True) if OmegaConf.is_config(node) else node
    container = {k: plain(v) for k, v in tree.items()} if isinstance(tree, dict) else plain(tree)
    return yaml.dump(container, Dumper=_Dumper, default_flow_style=False, allow_unicode=True, sort_keys=False)


def save_checkpoint(member: Member, outcome: Outcome, k: int, dirpath: Path) -> None:
    """checkpoints/last.ckpt of member k: a single run's checkpoint (its Regressor's weights and
    hyperparameters, its torch.optim optimizer's state, Lightning's loop progress), so that
    hydrafit-eval and resume= read it as any other. A diverged member keeps its last periodic
    state, or no checkpoint if it diverged before the first (as a single run)."""
    from hydra.utils import get_class

    if k in outcome.diverged:
        state = outcome.kept.get(k)
        if state is None:
            return
    else:
        state = {"template": outcome.template, "params": {n: v[k] for n, v in outcome.params.items()},
                 "optimizer": outcome.optimizer.member_state(k)}
    module = member.module  # its Regressor: the state_dict's keys, the hyperparameters, the optimizer
    settings = outcome.optimizer.settings[k]  # its resolved optimizer config, as instantiate builds it
    optimizer = get_class(settings["_target_"])(module.parameters(), **{
        name: value for name, value in settings.items() if not name.startswith("_")})
    optimizer.load_state_dict({"state": state["optimizer"], "param_groups": optimizer.state_dict()["param_groups"]})
    checkpoint = {**state["template"], "state_dict": {f"net.{n}": v.clone() for n, v in state["params"].items()},
                  "optimizer_states": [optimizer.state_dict()], "hparams_name": "kwargs",
                  "hyper_parameters": dict(module.hparams)}
    dirpath.mkdir(parents=True, exist_ok=True)
    tmp = dirpath / ".last.ckpt.tmp"
    torch.save(checkpoint, tmp)
    os.replace(tmp, dirpath / "last.ckpt")
