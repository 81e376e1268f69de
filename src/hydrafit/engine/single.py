"""A single run: its pieces built from the config in a fixed order (dataset, model, callbacks,
loggers, Trainer), announced in the log, then fitted by Lightning (fit). hydrafit.api.run is the
recipe around it (validate, resume, record the outcome); a population (hydrafit.engine.population)
builds each member with build_model, so a member's numbers are its single run's.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar

from hydrafit.compat.tensorboard import fast_event_checksums
from hydrafit.config.errors import ConfigError
from hydrafit.config.view import RunView
from hydrafit.data import load_dataset
from hydrafit.engine.callbacks import NoProfiler
from hydrafit.engine.lr_finder import find_lr
from hydrafit.engine.startup import quiet_lightning
from hydrafit.metrics import metric_names
from hydrafit.models import Regressor
from hydrafit.report.lineage import read_lineage, segment_values
from hydrafit.report.loggers import log_hyperparameters, logger_configs, purge_step
from hydrafit.report.status import RunStopped, run_status
from hydrafit.rundir.checkpoints import read_last
from hydrafit.rundir.files import read_metrics, running_process
from hydrafit.rundir.records import recorded_config, resolved_config

log = logging.getLogger(__name__)


def plain(node) -> dict | None:
    """A config node as resolved plain containers (what checkpoints may hold), None if empty."""
    return OmegaConf.to_container(node, resolve=True) if node else None


def check_optimized_metric(metric: str, datamodule) -> None:
    """Refuse, before training, an optimized_metric the run will never report: truth/rmse for
    data without a true function (dataset=csv), val/mse without a validation split."""
    reported = metric_names(datamodule) + ["train/loss"] + (["val/loss"] if len(datamodule.x_val) else [])
    if metric not in reported:
        hint = "; val/ metrics need dataset.val_fraction > 0" if metric.startswith("val/") else ""
        raise ConfigError(f"optimized_metric: this run does not report '{metric}'; "
                          f"it reports {', '.join(reported)}{hint}")


def build_model(cfg: DictConfig, announce: bool = True):
    """(datamodule, module) of the run: seeded, so the data noise and the net's initial weights
    are the run's own. A single run builds them here (build), and so does each member of a
    population (hydrafit.engine.population), which is why a member's numbers are its single run's.
    `announce`: log each piece (a population's members say it in their own train.log)."""
    say, view = log.info if announce else log.debug, RunView.of(cfg)
    pl.seed_everything(view.seed, workers=True, verbose=False)
    say("Dataset    %s", cfg.dataset._target_)
    datamodule = load_dataset(cfg.dataset, view.seed)
    check_optimized_metric(view.optimized_metric, datamodule)
    say("Model      %s, optimizer %s", cfg.model._target_, cfg.optimizer._target_)
    module = Regressor(plain(cfg.model), plain(cfg.optimizer), plain(cfg.scheduler),
                       scaling=getattr(datamodule, "scaling", None))
    return datamodule, module


def build(cfg: DictConfig, resume_step: int | None = None):
    """Instantiate the run's pieces in a fixed order, announcing each: (datamodule, module, trainer).
    `resume_step`: TensorBoard drops events at or after it (a crashed run's tail that is redone)."""
    datamodule, module = build_model(cfg)
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c is not None]
    fast_event_checksums()
    loggers = [instantiate(c, **purge_step(c, resume_step)) for c in logger_configs(cfg.logger)]
    view = RunView.of(cfg)
    log.info("Trainer    %s epochs, callbacks %s, loggers %s", view.max_epochs,
             [type(c).__name__ for c in callbacks], [type(lg).__name__ for lg in loggers])
    # Lightning's default profiler costs ~0.1 ms an epoch when off; see callbacks.NoProfiler
    profiler = {} if view.profiler else {"profiler": NoProfiler()}
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks), **profiler)
    return datamodule, module, trainer


def train(cfg: DictConfig, checkpoint: dict | None = None, ckpt_path=None):
    """Build the run from `cfg`, fit (continuing from `ckpt_path`, already loaded as `checkpoint`,
    when resuming), and return the Trainer, its module trained. Raises RunStopped if the loss
    diverged or a signal came."""
    quiet_lightning()
    datamodule, module, trainer = build(cfg, resume_step=checkpoint and checkpoint["global_step"])
    lr_find = RunView.of(cfg).lr_find
    if checkpoint is None:
        if lr_find:
            train_with_found_lr(cfg, module, datamodule, trainer)
        log_hyperparameters(trainer.loggers, cfg, metric_names(datamodule))
    else:
        log.info("Resuming   from %s (epoch %d)", ckpt_path, checkpoint["epoch"])
        if lr_find:  # the lr the finder chose, as the checkpoint records it
            use_found_lr(cfg, module, trainer, checkpoint["hyper_parameters"]["optimizer"]["lr"])
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    status, message = run_status(trainer)
    if status != "completed":
        raise RunStopped(status, message)
    return trainer


def train_with_found_lr(cfg: DictConfig, module, datamodule, trainer) -> None:
    """lr_find=true: Lightning's learning-rate finder picks optimizer.lr (hydrafit.engine.lr_finder)."""
    lr = find_lr(module, datamodule, cfg.trainer, Path(HydraConfig.get().runtime.output_dir))
    if lr is not None:
        log.info("Training   with lr=%g, lr_find's suggestion (the configured optimizer.lr=%g is not used)",
                 lr, cfg.optimizer.lr)
        use_found_lr(cfg, module, trainer, lr)


def use_found_lr(cfg: DictConfig, module, trainer, lr: float) -> None:
    """Train with the lr lr_find found: the loggers' parameters show it, metrics.json records it
    (hydrafit.report.metrics_file reads module.lr_suggestion)."""
    module.hparams.optimizer["lr"] = cfg.optimizer.lr = lr
    module.lr_suggestion = lr


def resumed_run(cfg: DictConfig):
    """(config, checkpoint, checkpoint path) of the run directory `cfg.resume`, checked before
    anything is written. Only trainer.max_epochs may change (to train longer). A run that died
    (its process killed) continues as an interrupted one; one that a live process runs is
    refused. In a sweep, a job continues only itself: resume_sweep= gives each interrupted or
    died job with a usable last.ckpt resume=<its own directory>, with its own overrides."""
    run_dir = Path(cfg.resume)  # hydrafit.config.preflight checked it is a run dir before Hydra wrote anything
    hydra = HydraConfig.get()
    own_job = hydra.mode == RunMode.MULTIRUN and run_dir.resolve() == Path(hydra.runtime.output_dir).resolve()
    if hydra.mode == RunMode.MULTIRUN and not own_job:
        raise ConfigError("resume: continues one run; it cannot be combined with --multirun")
    extra = [] if own_job else [o for o in hydra.overrides.task
                                if not o.startswith(("resume=", "trainer.max_epochs="))]
    if extra:
        raise ConfigError(f"resume: a resumed run keeps its config; only trainer.max_epochs may be "
                          f"overridden, got {' '.join(extra)}")
    refuse_running(run_dir)
    try:  # refuse a corrupt, truncated or foreign file before training writes anything
        checkpoint, ckpt_path = read_last(run_dir)
    except ValueError as error:
        raise ConfigError(f"resume: {error}") from None
    # A job: its config as it first ran, also what ${hydra:...} gave it (its TensorBoard run is named
    # by its overrides, and this invocation's add resume=); a run: its data path made absolute.
    resumed = resolved_config(run_dir) if own_job else recorded_config(run_dir)
    if not own_job and any(o.startswith("trainer.max_epochs=") for o in hydra.overrides.task):
        resumed.trainer.max_epochs = cfg.trainer.max_epochs
    return resumed, checkpoint, ckpt_path


def replayed_run(cfg: DictConfig):
    """(config, lineage) of `pbt_replay=<member dir>`: the member's recorded config, its
    optimizer's values the first of its lineage's (report.lineage), the later ones set from their
    epochs on as it trains (engine.replay). Only trainer.<key> may be overridden besides
    (trainer.accelerator=gpu, say); the rest is the member's."""
    run_dir = Path(cfg.pbt_replay)  # hydrafit.config.preflight checked it holds pbt_schedule.yaml
    hydra = HydraConfig.get()
    if hydra.mode == RunMode.MULTIRUN:
        raise ConfigError("pbt_replay: replays one member as one run; it cannot be combined with --multirun")
    extra = [o for o in hydra.overrides.task if not o.startswith(("pbt_replay=", "trainer."))]
    if extra:
        raise ConfigError(f"pbt_replay: a replay trains the member's own config; only trainer.<key>=... may be "
                          f"overridden (e.g. trainer.accelerator=gpu), got {' '.join(extra)}")
    lineage = read_lineage(run_dir)
    replay = recorded_config(run_dir)
    for override in hydra.overrides.task:
        if override.startswith("trainer."):
            key = override.split("=", 1)[0]
            OmegaConf.update(replay, key, OmegaConf.select(cfg, key))
    for key, value in segment_values(lineage[0]).items():
        OmegaConf.update(replay, key, value)
    replay.pbt_replay = str(run_dir)
    log.info("Replaying  PBT member %s: %s", run_dir, "; ".join(
        f"from epoch {s['from_epoch']} as member {s['trained_as']}" for s in lineage))
    return replay, lineage


def refuse_running(run_dir: Path) -> None:
    """ConfigError if a live process runs `run_dir` (two fits would write one directory); a
    run whose process died is said so in the log and continues as an interrupted one."""
    owner = running_process(run_dir / "metrics.json")
    if owner is not None:
        raise ConfigError(f"resume: '{run_dir}' is still running ({owner}); wait for it to end, or stop it "
                          f"(Ctrl-C saves its last.ckpt) and resume it then")
    status, _, why = read_metrics(run_dir / "metrics.json")
    if status == "died":
        log.info("Resuming   a run that died: %s", why)
