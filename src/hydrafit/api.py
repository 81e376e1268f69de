"""hydrafit from Python: train a run, or load a finished one, and use its model.

    import hydrafit
    result = hydrafit.fit(["model.hidden_dims=[32,32]", "trainer.max_epochs=100"])
    result.metrics["truth/rmse"], result.run_dir
    result.predict([0.0, 1.0])              # numpy, in the data's units
    again = hydrafit.load(result.run_dir)    # the same, from checkpoints/last.ckpt

A fit is the run `hydrafit-train <overrides>` makes, in this process, through the same recipe
(run): the same run directory, .hydra/ record and files. What differs is what a notebook must
not meet: bad input raises ConfigError (nothing is left on disk) instead of exiting, a diverged
or interrupted run raises RunStopped, the process never exits, and the caller's process is as it
was afterwards (process_kept: signal handlers, logging, warning filters, OmegaConf's parser,
TensorBoard's checksum function).
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hydrafit.compat.omegaconf import parsing_cached
from hydrafit.config.compose import compose, job_config, start
from hydrafit.config.errors import ConfigError
from hydrafit.config.preflight import check_request, check_run
from hydrafit.config.validate import validate
from hydrafit.config.view import RunView
from hydrafit.report.status import RunStopped
from hydrafit.rundir import dirs
from hydrafit.rundir.files import write_failure
from hydrafit.rundir.records import resolved_config

log = logging.getLogger(__name__)


@dataclass
class Result:
    """A run: its directory, config (interpolations resolved), final metrics (its metrics.json;
    empty without the MetricsFile callback) and trained model (a hydrafit.models.Regressor,
    on the CPU, in eval mode)."""

    run_dir: Path
    config: Any  # omegaconf.DictConfig
    metrics: dict
    model: Any

    def predict(self, x) -> "numpy.ndarray":  # noqa: F821
        """The model at `x` (a number or array-like of numbers, in the data's units): a float32
        numpy array of x's shape, in the data's units (what hydrafit-eval's predictions hold)."""
        import numpy as np
        import torch

        from hydrafit.metrics import predict  # torch: imported when a model is asked

        x = np.asarray(x, dtype=np.float32)
        return predict(self.model.net, torch.from_numpy(x.reshape(-1, 1))).numpy().reshape(x.shape)


def fit(overrides: Sequence[str] = (), run_dir: str | Path | None = None) -> Result:
    """Train the run `hydrafit-train <overrides>` would train, into `run_dir` (default: a new
    directory under outputs/runs/ of the current directory, named as the CLI names it)."""
    claimed, created = len(dirs.CLAIMED), []
    with process_kept():
        try:
            cfg = compose(list(overrides), run_dir)  # claims a new run dir (hydrafit.rundir.dirs)
            out = Path(cfg.hydra.runtime.output_dir)
            created = dirs.CLAIMED[claimed:] or [d for d in [out, *out.parents] if not d.exists()]
            validate(job_config(cfg))  # before anything is written, like the CLI's one line
            check_run(cfg, str(out))
            job = start(cfg)
            with run_log(out / f"{cfg.hydra.job.name}.log", cfg):
                _, model, _ = run(job)
        except ConfigError:  # bad input, found before or while building: no directory is left
            remove_created(created)
            raise
    model.trainer = None  # let the Trainer, its loggers and data go
    return result(out, model)


def run(cfg: DictConfig):
    """What `hydrafit-train` and hydrafit.fit do with a composed job config: validate, then train
    it, continue the run `resume=` names, or replay the PBT member `pbt_replay=` names. Returns
    (the config trained, its trained Regressor, its optimized metric or None). An error other
    than bad input or a stopped run is recorded in metrics.json, then raised."""
    # The engine imports torch and Lightning (~4 s): imported when a run starts, so that `import
    # hydrafit` and `hydrafit-train --help` stay quick.
    from hydrafit.engine.replay import replay
    from hydrafit.engine.single import replayed_run, resumed_run, train

    try:
        validate(cfg)
        if RunView.of(cfg).pbt_replay is not None:
            replayed, lineage = replayed_run(cfg)
            validate(replayed)
            return replayed, *replay(replayed, lineage)
        if cfg.resume is None:
            return trained(cfg, train(cfg))
        resumed, checkpoint, ckpt_path = resumed_run(cfg)
        validate(resumed)
        return trained(resumed, train(resumed, checkpoint, ckpt_path))
    except (ConfigError, RunStopped):
        raise
    except Exception as error:
        record_failure(error)
        raise


def record_failure(error: BaseException) -> None:
    """metrics.json of a job that did not finish: `status: failed` and the error, so a sweep
    summary (and a person) can tell it from a result (files.write_failure: also on a full disk)."""
    write_failure(Path(HydraConfig.get().runtime.output_dir) / "metrics.json", error)


def trained(cfg: DictConfig, trainer) -> tuple:
    """run()'s (config, Regressor, optimized metric) of a Lightning fit."""
    return cfg, trainer.lightning_module, optimized_value(cfg, trainer)


def optimized_value(cfg: DictConfig, trainer) -> float | None:
    """The final value of `cfg.optimized_metric`, which `hydrafit-train` returns to sweepers
    (None when no MetricsFile callback computed it), announced with the run dir."""
    metric = trainer.callback_metrics.get(cfg.optimized_metric)
    if metric is None:
        return None
    log.info("%s = %.6g  (run dir: %s)", cfg.optimized_metric, float(metric),
             HydraConfig.get().runtime.output_dir)
    return float(metric)


@contextlib.contextmanager
def process_kept():
    """Within: what a fit changes in its process (Hydra's current config, warning filters, the
    filters of Lightning's logger, OmegaConf's parser, TensorBoard's checksum function) is put
    back as the caller had it when the block ends, however it ends. Signal handlers are put back
    by GracefulStop itself (on_train_end, on_exception)."""
    # TensorBoard (~0.25 s to import) only once a fit starts, which imports it anyway: `import
    # hydrafit` and `hydrafit-train --help` stay without it.
    from hydrafit.compat.tensorboard import checksums_in_c

    lightning_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    hydra_config, log_filters = HydraConfig.instance().cfg, list(lightning_log.filters)
    try:
        with warnings.catch_warnings(), parsing_cached(), checksums_in_c():
            yield
    finally:
        HydraConfig.instance().cfg = hydra_config
        lightning_log.filters[:] = log_filters


def remove_created(created: list[Path]) -> None:
    """Undo the directories a refused fit made: the run dir, then its new parents if empty."""
    if created:
        shutil.rmtree(created[0], ignore_errors=True)
    for parent in created[1:]:
        with contextlib.suppress(OSError):
            parent.rmdir()


def result(run_dir: Path, model) -> Result:
    """The Result of the run in `run_dir` whose trained model is `model`."""
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return Result(run_dir, resolved_config(run_dir), metrics, model.cpu().eval())


def load(run_dir: str | Path, ckpt: str = "last") -> Result:
    """A finished run (a single run's directory or one job's of a sweep), its model from
    checkpoints/<ckpt>.ckpt ("last" or "best"). A path that is not such a run raises ConfigError."""
    from hydrafit.models import load_regressor  # torch: imported when a model is loaded

    path = check_request(OmegaConf.create({"run": str(run_dir), "ckpt": ckpt, "input": None}))
    return result(path.parent.parent, load_regressor(path)[0])


@contextlib.contextmanager
def run_log(path: Path, cfg):
    """The run's log file, as the CLI writes it (Hydra's job_logging format), for the length of
    the fit: INFO and above of every logger, whatever the caller's logging shows."""
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(cfg.hydra.job_logging.formatters.simple.format))
    level = root.level
    root.addHandler(handler)
    if level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
