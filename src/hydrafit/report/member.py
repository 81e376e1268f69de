"""A population member's run directory, written by the same functions a single run's files are
written by (metrics_file.write_metrics, figure.write_fit_png, checkpoint.save_checkpoint,
loggers.*), so that it holds what the member's single run would leave."""
from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig

from hydrafit.metrics import final_metrics, metric_names
from hydrafit.report.checkpoint import save_checkpoint
from hydrafit.report.figure import write_fit_png
from hydrafit.report.lineage import SCHEDULE_FILE, schedule_yaml, values_by_epoch
from hydrafit.report.loggers import (fit_span, log_fit_image, log_hyperparameters, log_scalars, logger_configs,
                                     save_hparams)
from hydrafit.report.metrics_file import write_metrics, write_running
from hydrafit.report.status import RunStopped, diverged_message, interrupted_message
from hydrafit.rundir.files import write_atomic

log = logging.getLogger(__name__)


def member_task(member, outcome, k: int, size: int, image):
    """The Hydra task of population member k: writes its run directory (write_member) and
    returns its optimized metric, as hydrafit-train returns a single run's."""
    def task(cfg: DictConfig):
        log.info("Dataset    %s", cfg.dataset._target_)
        log.info("Model      %s, optimizer %s", cfg.model._target_, cfg.optimizer._target_)
        log.info("Trained as member %d of a population of %d in one fit of %.1f s (hydra/launcher=vectorized)",
                 k, size, outcome.seconds)
        return write_member(member, outcome, k, image)
    return task


def write_started(member, owner: dict) -> None:
    """Member's metrics.json as its population's fit starts: `status: running`, owned by the
    process that trains the population (`owner`, rundir.owner.owner_record), so that a kill of
    that process leaves every member `died`, as it leaves a single run. The job's Hydra config
    must be the current one: the path interpolates ${hydra:runtime.output_dir}."""
    path = member.view.callbacks.metrics_file
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_running(path, owner)


def write_member(member, outcome, k: int, image) -> float | None:
    """Member k's run directory, as a single run leaves it: train/loss (and val/loss) of every epoch, the fit
    image and final metrics in the logger (HPARAMS), fit.png, metrics.json, checkpoints/last.ckpt.
    Raises RunStopped for a diverged or interrupted member, as a single run does."""
    cfg, datamodule, net, view = member.cfg, member.datamodule, member.module.net, member.view
    status, message, epochs = "completed", None, outcome.epochs_of(k)
    run_dir = view.run_dir
    if k in outcome.diverged:
        status, message = "diverged", diverged_message(outcome.diverged[k][1], epochs, view.lr)
    elif k in outcome.pruned:
        status, message = "pruned", outcome.pruned[k]
    elif outcome.interrupted and k not in outcome.finished:
        status, message = "interrupted", interrupted_message(outcome.interrupted, epochs, run_dir)
    step = epochs * outcome.steps_per_epoch
    loggers = [instantiate(c, **fit_span(c, outcome.started, outcome.seconds)) for c in logger_configs(cfg.logger)]
    log_hyperparameters(loggers, cfg, metric_names(datamodule))
    steps = [(epoch + 1) * outcome.steps_per_epoch - 1 for epoch in range(epochs)]
    log_scalars(loggers, "train/loss", outcome.losses[:epochs, k].tolist(), steps)
    if outcome.pbt is not None:  # hparams_search=pbt: the values it trained with, its schedule
        for key, values in values_by_epoch(outcome.pbt, k, epochs).items():
            log_scalars(loggers, f"pbt/{key}", values, steps)
        if outcome.pbt["numbers"] is not None:  # a PBT run's member (not a replay: engine.replay)
            write_atomic(run_dir / SCHEDULE_FILE, schedule_yaml(outcome.pbt, k, outcome.pbt["numbers"]))
    if outcome.val_losses is not None:  # on the epochs a single run validates (trainer.check_val_every_n_epoch)
        every = [e for e in range(epochs) if (e + 1) % view.val_every == 0]
        log_scalars(loggers, "val/loss", outcome.val_losses[every, k].tolist(), [steps[e] for e in every])
    if view.callbacks.fit_image:
        png = image()  # fit_images
        log_fit_image(loggers, png, step)
        write_fit_png(run_dir, png)
    metrics = final_metrics(net, datamodule) if status != "diverged" else {}
    if view.callbacks.metrics_file:
        write_metrics(view.callbacks.metrics_file, loggers, step, metrics, epochs,
                      outcome.seconds, status, message)
    if view.callbacks.checkpoints:
        save_checkpoint(member, outcome, k, view.callbacks.checkpoints)
    if status == "completed":
        save_hparams(loggers)
    for logger in loggers:
        logger.finalize("success" if status == "completed" else "failed")
    if status != "completed":
        raise RunStopped(status, message)
    value = metrics.get(view.optimized_metric)
    if value is not None:
        log.info("%s = %.6g  (run dir: %s)", view.optimized_metric, value, run_dir)
    return value
