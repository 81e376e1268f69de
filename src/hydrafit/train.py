"""hydrafit-train: compose conf/train.yaml with overrides, validate, train, report.

    hydrafit-train                                   # the Lux polynomial tutorial
    hydrafit-train model.hidden_dims=[32,32] optimizer=sgd optimizer.lr=0.1
    hydrafit-train --cfg job                         # print the composed config, train nothing
    python -m hydrafit.train experiment=lux_tutorial

Only Hydra and OmegaConf are imported at module level: `--help` and `--cfg` are answered by
Hydra alone, without paying ~3 s for torch and Lightning.
"""
from __future__ import annotations

import atexit
import functools
import logging
import math
import os
import sys
import threading
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hydrafit.expression import quote_formulas
from hydrafit.preflight import explain_composition_errors
from hydrafit import sweep

sweep.register_sweeper()  # hydra/sweeper=resumable; importing sweep registers its ${hydrafit.*} resolvers

log = logging.getLogger(__name__)

# `resume=<run dir>` continues a run in its own directory: conf/hydra/default.yaml uses this to
# point Hydra's run dir there and to write the new invocation's record to .hydra/resume_<time>/
# instead of over the original .hydra/.
OmegaConf.register_new_resolver(
    "hydrafit.if_resume", lambda resume, when_resuming, otherwise: when_resuming if resume else otherwise)


class RunStopped(RuntimeError):
    """Fit ended early (diverged or interrupted); metrics.json already records why."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def plain(node) -> dict | None:
    """A config node as resolved plain containers (what checkpoints may hold), None if empty."""
    return OmegaConf.to_container(node, resolve=True) if node else None


def log_hyperparameters(logger, cfg: DictConfig, metric_names) -> None:
    """Fill TensorBoard's HPARAMS tab once: the run's config, with its final metrics as NaN
    placeholders that MetricsFile overwrites at the end (not Lightning's hp_metric = -1)."""
    params = {k: plain(cfg[k]) for k in ("dataset", "model", "optimizer", "scheduler") if cfg[k]}
    params |= {"trainer": {"max_epochs": cfg.trainer.max_epochs}, "seed": cfg.seed}
    if hasattr(logger, "experiment") and hasattr(logger.experiment, "add_hparams"):
        logger.log_hyperparams(params, {name: math.nan for name in metric_names})
    elif logger:
        logger.log_hyperparams(params)


def compose_job(overrides: list[str], run_dir: Path) -> DictConfig:
    """The job config that `hydrafit-train <overrides> hydra.run.dir=<run_dir>` would train,
    composed in-process (notebooks, tests, benchmarks), with Hydra's runtime set as a run sets
    it, so that ${hydra:runtime.output_dir} resolves to run_dir. Pass it to build() or train()."""
    from hydra import compose, initialize_config_module
    from omegaconf import open_dict

    with initialize_config_module("hydrafit.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"hydra.run.dir={run_dir}"], return_hydra_config=True)
    Path(run_dir).mkdir(parents=True, exist_ok=True)  # as Hydra does before the task starts
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def load_dataset(dataset: DictConfig, seed: int):
    """The datamodule of a `dataset` config. A data file that cannot be used (dataset=csv) or a
    formula that is not finite on the range (dataset=expression) raises ConfigError, not
    Hydra's InstantiationException, so that it ends a run with one line and exit code 2."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from hydrafit.config import ConfigError

    try:
        return instantiate(dataset, seed=seed, _convert_="all")
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise


def check_optimized_metric(cfg: DictConfig, datamodule) -> None:
    """Refuse, before training, an optimized_metric the run will never report: truth/rmse for
    data without a true function (dataset=csv), val/mse without a validation split."""
    from hydrafit.config import ConfigError
    from hydrafit.metrics import metric_names

    reported = metric_names(datamodule) + ["train/loss"] + (["val/loss"] if len(datamodule.x_val) else [])
    if cfg.optimized_metric not in reported:
        hint = "; val/ metrics need dataset.val_fraction > 0" if cfg.optimized_metric.startswith("val/") else ""
        raise ConfigError(f"optimized_metric: this run does not report '{cfg.optimized_metric}'; "
                          f"it reports {', '.join(reported)}{hint}")


def build_model(cfg: DictConfig, announce: bool = True):
    """(datamodule, module) of the run: seeded, so the data noise and the net's initial weights
    are the run's own. A single run builds them here (build), and so does each member of a
    population (hydrafit.population), which is why a member's numbers are its single run's.
    `announce`: log each piece (a population's members say it in their own train.log)."""
    import pytorch_lightning as pl

    from hydrafit.models import Regressor

    say = log.info if announce else log.debug
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    say("Dataset    %s", cfg.dataset._target_)
    datamodule = load_dataset(cfg.dataset, cfg.seed)
    check_optimized_metric(cfg, datamodule)
    say("Model      %s, optimizer %s", cfg.model._target_, cfg.optimizer._target_)
    module = Regressor(plain(cfg.model), plain(cfg.optimizer), plain(cfg.scheduler),
                       scaling=getattr(datamodule, "scaling", None))
    return datamodule, module


def build(cfg: DictConfig, resume_step: int | None = None):
    """Instantiate the run's pieces in a fixed order, announcing each: (datamodule, module, trainer).
    `resume_step`: TensorBoard drops events at or after it (a crashed run's tail that is redone)."""
    from hydra.utils import instantiate
    from pytorch_lightning.callbacks import ModelCheckpoint, ProgressBar

    from hydrafit.callbacks import NoProfiler

    datamodule, module = build_model(cfg)
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values()]
    purge = {"purge_step": resume_step} if resume_step and "TensorBoard" in cfg.logger.get("_target_", "") else {}
    logger = instantiate(cfg.logger, **purge) if cfg.logger else False
    log.info("Trainer    %s epochs, callbacks %s, logger %s", cfg.trainer.max_epochs,
             [type(c).__name__ for c in callbacks], type(logger).__name__ if logger else None)
    # Lightning's default profiler costs ~0.1 ms an epoch when off; see callbacks.NoProfiler
    profiler = {} if cfg.trainer.get("profiler") else {"profiler": NoProfiler()}
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=logger,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks), **profiler)
    return datamodule, module, trainer


def train(cfg: DictConfig, checkpoint: dict | None = None, ckpt_path=None) -> float | None:
    """Build the run from `cfg`, fit (continuing from `ckpt_path`, already loaded as `checkpoint`,
    when resuming), and return the final value of `cfg.optimized_metric` (None when no
    MetricsFile callback computed it). Raises RunStopped if the loss diverged or a signal came."""
    from hydrafit.callbacks import run_status
    from hydrafit.metrics import metric_names

    # Lightning noise that says nothing about this run: "no validation split" is intended,
    # and a torch deprecation inside Lightning's own code.
    warnings.filterwarnings("ignore", message="Total length of .* across ranks is zero")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")

    datamodule, module, trainer = build(cfg, resume_step=checkpoint and checkpoint["global_step"])
    if checkpoint is None:
        log_hyperparameters(trainer.logger, cfg, metric_names(datamodule))
    else:
        log.info("Resuming   from %s (epoch %d)", ckpt_path, checkpoint["epoch"])
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    status, message = run_status(trainer)
    if status != "completed":
        raise RunStopped(status, message)

    metric = trainer.callback_metrics.get(cfg.optimized_metric)
    if metric is None:
        return None
    log.info("%s = %.6g  (run dir: %s)", cfg.optimized_metric, float(metric),
             HydraConfig.get().runtime.output_dir)
    return float(metric)


def record_failure(error: BaseException) -> None:
    """metrics.json of a job that did not finish: `status: failed` and the error, so a sweep
    summary (and a person) can tell it from a result."""
    from hydrafit.callbacks import write_json_atomic

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    write_json_atomic(output_dir / "metrics.json", {
        "status": "failed", "error": f"{type(error).__name__}: {error}".strip()})


def resumed_run(cfg: DictConfig):
    """(config, checkpoint, checkpoint path) of the run directory `cfg.resume`, checked before
    anything is written. Only trainer.max_epochs may change (to train longer)."""
    import torch

    from hydrafit.config import ConfigError

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError("resume: continues one run; it cannot be combined with --multirun")
    run_dir = Path(cfg.resume)  # hydrafit.preflight checked it is a run dir before Hydra wrote anything
    extra = [o for o in HydraConfig.get().overrides.task
             if not o.startswith(("resume=", "trainer.max_epochs="))]
    if extra:
        raise ConfigError(f"resume: a resumed run keeps its config; only trainer.max_epochs may be "
                          f"overridden, got {' '.join(extra)}")
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt_path.is_file():
        raise ConfigError(f"resume: no checkpoint to continue from ({ckpt_path} is missing)")
    try:  # refuse a corrupt, truncated or foreign file before training writes anything
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        checkpoint["state_dict"], checkpoint["global_step"], checkpoint["epoch"]
    except Exception as error:
        raise ConfigError(f"resume: {ckpt_path} is not a readable hydrafit checkpoint "
                          f"({type(error).__name__})") from None
    from hydrafit.evaluate import run_config  # the run's config, its data path made absolute

    resumed = run_config(run_dir)
    if any(o.startswith("trainer.max_epochs=") for o in HydraConfig.get().overrides.task):
        resumed.trainer.max_epochs = cfg.trainer.max_epochs
    return resumed, checkpoint, ckpt_path


def exits_without_teardown(entry):
    """Decorates the console entry point: once it has returned normally, the process exits
    without tearing the interpreter down. Freeing torch's and Lightning's objects one by one
    takes ~1 s (a sixth of a default run; benchmarks/, target 2) and achieves nothing at exit.
    Output is flushed and atexit handlers run first. Errors, calls from other code (tests),
    live non-daemon threads and a live torch.distributed process group exit the usual way."""
    @functools.wraps(entry)
    def entry_then_exit(*args, **kwargs):
        result = entry(*args, **kwargs)
        dist = sys.modules.get("torch.distributed")
        if (getattr(sys.modules.get("__main__"), "main", None) is entry_then_exit
                and all(t.daemon or t is threading.main_thread() for t in threading.enumerate())
                and not (dist and dist.is_available() and dist.is_initialized())):
            atexit._run_exitfuncs()  # what a normal exit runs: logging.shutdown, multiprocessing, ...
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):  # a closed pipe (| head) or stream: nothing to keep
                    pass
            os._exit(0)
        return result
    return entry_then_exit


@exits_without_teardown  # the second an exit spends freeing objects
@quote_formulas  # dataset.expr=sin(3*x) + 0.5*x, as typed, despite Hydra's override grammar
@explain_composition_errors  # model.hiden=3, model=transformer: one line, not Hydra's several
@hydra.main(version_base="1.3", config_path="pkg://hydrafit.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydrafit.config import ConfigError, validate

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        validate(cfg)
        if cfg.resume is None:
            return train(cfg)
        resumed, checkpoint, ckpt_path = resumed_run(cfg)
        validate(resumed)
        return train(resumed, checkpoint, ckpt_path)
    except RunStopped as stop:  # metrics.json already says diverged/interrupted
        if multirun:
            raise
        print(f"hydrafit-train: {stop.status}: {stop}", file=sys.stderr)
        sys.exit(130 if stop.status == "interrupted" else 1)
    except ConfigError as error:
        if multirun:  # one bad job of a grid: record it, let Hydra mark it failed, go on
            record_failure(error)
            raise
        # A single run: one clear line, no traceback, nothing written beyond Hydra's .hydra/.
        print(f"hydrafit-train: error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:
        record_failure(error)
        raise


if __name__ == "__main__":
    main()
