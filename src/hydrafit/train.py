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
import gc
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
from hydrafit import run_dirs, sweep  # both register the ${hydrafit.*} resolvers conf/ uses

sweep.register_sweeper()  # hydra/sweeper=resumable; importing sweep registers its ${hydrafit.*} resolvers

log = logging.getLogger(__name__)



class RunStopped(RuntimeError):
    """Fit ended early (diverged or interrupted); metrics.json already records why."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status

    def __reduce__(self):  # pickled back from joblib workers with its status (an Optuna sweeper
        return RunStopped, (self.status, str(self))  # tells pruned from failed by it)


def plain(node) -> dict | None:
    """A config node as resolved plain containers (what checkpoints may hold), None if empty."""
    return OmegaConf.to_container(node, resolve=True) if node else None


def log_hyperparameters(loggers, cfg: DictConfig, metric_names) -> None:
    """Give each logger the run's config once: TensorBoard's HPARAMS tab with its final metrics
    as NaN placeholders that MetricsFile overwrites at the end (not Lightning's hp_metric = -1);
    others (CSV, MLflow) the same flattened keys as parameters."""
    from hydrafit.hparams import hyperparameters, log_session

    params = hyperparameters(cfg)
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    for logger in loggers:
        if hasattr(logger, "experiment") and hasattr(logger.experiment, "add_hparams"):
            metrics = {name: math.nan for name in metric_names}
            if in_sweep:  # the sweep declares the experiment (hydrafit.hparams)
                log_session(logger, params, metrics)
            else:
                logger.log_hyperparams(params, metrics)
        else:
            logger.log_hyperparams(params)


def compose(overrides: list[str], run_dir: str | Path | None = None) -> DictConfig:
    """The config `hydrafit-train <overrides>` would run, Hydra's node included, composed
    in-process (hydrafit.fit, tests, benchmarks): formulas quoted as the command line quotes
    them, a problem Hydra finds raised as the CLI's one-line ConfigError, and Hydra's runtime set
    as a run sets it, its output dir `run_dir` or else the one `hydra.run.dir` names. Writes nothing."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import open_dict, read_write

    from hydrafit.config import ConfigError
    from hydrafit.expression import quote_formula
    from hydrafit.preflight import composition_problem

    overrides = [quote_formula(o) for o in overrides] + ([f"hydra.run.dir={run_dir}"] if run_dir else [])
    overrides.append("hydra.mode=RUN")  # as Hydra's own run adds it
    try:  # job_name: the CLI's, so .hydra/hydra.yaml and <job name>.log are the same
        with initialize_config_module("hydrafit.conf", version_base="1.3", job_name="train"):
            cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    except HydraException as error:
        raise ConfigError(composition_problem(overrides) or str(error).splitlines()[0]) from None
    HydraConfig.instance().set_config(cfg)  # resolves hydra.run.dir, as Hydra's run_job does
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = os.path.abspath(str(cfg.hydra.run.dir))
    HydraConfig.instance().set_config(cfg)
    return cfg


def job_config(cfg: DictConfig) -> DictConfig:
    """The task's part of a composed config: what Hydra passes to main() and saves as config.yaml."""
    from omegaconf import open_dict

    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
    return job


def start(cfg: DictConfig) -> DictConfig:
    """What Hydra does between composing and calling main(): create the run dir and write its
    .hydra/ record (config.yaml, hydra.yaml, overrides.yaml), so that hydrafit-eval and resume=
    read an in-process run like any other. Returns the job config."""
    job = job_config(cfg)
    record = Path(cfg.hydra.runtime.output_dir) / str(cfg.hydra.output_subdir)
    record.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(job, record / "config.yaml")
    OmegaConf.save(HydraConfig.instance().cfg, record / "hydra.yaml")
    OmegaConf.save(cfg.hydra.overrides.task, record / "overrides.yaml")
    return job


def compose_job(overrides: list[str], run_dir: Path) -> DictConfig:
    """The job config that `hydrafit-train <overrides> hydra.run.dir=<run_dir>` would train,
    with its run dir and record written as Hydra writes them. Pass it to build() or train()."""
    return start(compose(overrides, run_dir))


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


def logger_configs(node: DictConfig | None) -> list[DictConfig]:
    """The `logger` group's loggers: none, one (`_target_` at the top) or several by name (logger=many)."""
    if not node:
        return []
    return [node] if "_target_" in node else [c for c in node.values() if c]


def purge_step(logger: DictConfig, resume_step: int | None) -> dict:
    """TensorBoard drops the events a crashed run wrote at or after the step a resumed run redoes."""
    return {"purge_step": resume_step} if resume_step and "TensorBoard" in logger._target_ else {}


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

    from hydrafit.callbacks import NoProfiler, fast_event_checksums

    datamodule, module = build_model(cfg)
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values()]
    fast_event_checksums()
    loggers = [instantiate(c, **purge_step(c, resume_step)) for c in logger_configs(cfg.logger)]
    log.info("Trainer    %s epochs, callbacks %s, loggers %s", cfg.trainer.max_epochs,
             [type(c).__name__ for c in callbacks], [type(lg).__name__ for lg in loggers])
    # Lightning's default profiler costs ~0.1 ms an epoch when off; see callbacks.NoProfiler
    profiler = {} if cfg.trainer.get("profiler") else {"profiler": NoProfiler()}
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks), **profiler)
    return datamodule, module, trainer


def advertisement(record: logging.LogRecord) -> bool:
    """False for Lightning's "💡 Tip: ... try installing litlogger/litmodels" lines (a logging filter)."""
    return not str(record.msg).startswith("💡 Tip")


def import_lightning() -> None:
    """Import torch and Lightning (~4 s on this project's CPU) with Python's cycle collector
    paused, then move the ~370k objects they made, which live as long as the process, out of its
    way (gc.freeze). Otherwise it walks them all again and again while they pile up (5 full
    collections, ~0.6 s of a default run, that collect nearly nothing), and again after a
    vectorised sweep's batch (launch); forked processes (the vectorised launcher's) then leave
    their pages shared, as gc.freeze's documentation says. Only as a process's first import of
    torch: a Python session that imported it itself (hydrafit.fit) keeps its objects collectable."""
    if "torch" in sys.modules or "pytorch_lightning" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import pytorch_lightning  # noqa: F401
        import torch  # noqa: F401
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def quiet_lightning() -> None:
    """Silence, where each comes from, the Lightning output that says nothing about the run: its
    advertising tips (logged at INFO by its rank_zero logger), "no validation split" (intended
    here) and a torch deprecation inside Lightning's own code. Other warnings still show."""
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if advertisement not in rank_zero.filters:
        rank_zero.addFilter(advertisement)
    warnings.filterwarnings("ignore", message="Total length of .* across ranks is zero")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")


def train(cfg: DictConfig, checkpoint: dict | None = None, ckpt_path=None):
    """Build the run from `cfg`, fit (continuing from `ckpt_path`, already loaded as `checkpoint`,
    when resuming), and return the Trainer, its module trained. Raises RunStopped if the loss
    diverged or a signal came."""
    from hydrafit.callbacks import run_status
    from hydrafit.metrics import metric_names

    quiet_lightning()
    datamodule, module, trainer = build(cfg, resume_step=checkpoint and checkpoint["global_step"])
    if checkpoint is None:
        if cfg.get("lr_find"):
            train_with_found_lr(cfg, module, datamodule, trainer)
        log_hyperparameters(trainer.loggers, cfg, metric_names(datamodule))
    else:
        log.info("Resuming   from %s (epoch %d)", ckpt_path, checkpoint["epoch"])
        if cfg.get("lr_find"):  # the lr the finder chose, as the checkpoint records it
            use_found_lr(cfg, module, trainer, checkpoint["hyper_parameters"]["optimizer"]["lr"])
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    status, message = run_status(trainer)
    if status != "completed":
        raise RunStopped(status, message)
    return trainer


def train_with_found_lr(cfg: DictConfig, module, datamodule, trainer) -> None:
    """lr_find=true: Lightning's learning-rate finder picks optimizer.lr (hydrafit.lr_finder)."""
    from hydrafit.lr_finder import find_lr

    lr = find_lr(module, datamodule, cfg.trainer, Path(HydraConfig.get().runtime.output_dir))
    if lr is not None:
        log.info("Training   with lr=%g, lr_find's suggestion (the configured optimizer.lr=%g is not used)",
                 lr, cfg.optimizer.lr)
        use_found_lr(cfg, module, trainer, lr)


def use_found_lr(cfg: DictConfig, module, trainer, lr: float) -> None:
    """Train with the lr lr_find found: the loggers' parameters show it, metrics.json records it."""
    from hydrafit.callbacks import MetricsFile

    module.hparams.optimizer["lr"] = cfg.optimizer.lr = lr
    for callback in trainer.callbacks:
        if isinstance(callback, MetricsFile):
            callback.extra["lr_find/suggestion"] = lr


def optimized_value(cfg: DictConfig, trainer) -> float | None:
    """The final value of `cfg.optimized_metric`, which `hydrafit-train` returns to sweepers
    (None when no MetricsFile callback computed it), announced with the run dir."""
    metric = trainer.callback_metrics.get(cfg.optimized_metric)
    if metric is None:
        return None
    log.info("%s = %.6g  (run dir: %s)", cfg.optimized_metric, float(metric),
             HydraConfig.get().runtime.output_dir)
    return float(metric)


def run(cfg: DictConfig):
    """What `hydrafit-train` and hydrafit.fit do with a composed job config: validate, then train
    it, or continue the run `resume=` names. Returns (the config trained, the Trainer). An error
    other than bad input or a stopped run is recorded in metrics.json, then raised."""
    from hydrafit.config import ConfigError, parse_interpolations_once, validate

    parse_interpolations_once()
    import_lightning()
    try:
        validate(cfg)
        if cfg.resume is None:
            return cfg, train(cfg)
        resumed, checkpoint, ckpt_path = resumed_run(cfg)
        validate(resumed)
        return resumed, train(resumed, checkpoint, ckpt_path)
    except (ConfigError, RunStopped):
        raise
    except Exception as error:
        record_failure(error)
        raise


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
    from hydrafit.config import ConfigError

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return optimized_value(*run(cfg))
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


if __name__ == "__main__":
    main()
