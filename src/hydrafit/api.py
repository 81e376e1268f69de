"""hydrafit from Python: train a run, or load a finished one, and use its model.

    import hydrafit
    result = hydrafit.fit(["model.hidden_dims=[32,32]", "trainer.max_epochs=100"])
    result.metrics["truth/rmse"], result.run_dir
    result.predict([0.0, 1.0])              # numpy, in the data's units
    again = hydrafit.load(result.run_dir)    # the same, from checkpoints/last.ckpt

A fit is the run `hydrafit-train <overrides>` makes (hydrafit.train.compose/start/run), in
this process: the same run directory, .hydra/ record and files. What differs is what a
notebook must not meet: bad input raises ConfigError (nothing is left on disk) instead of
exiting, a diverged or interrupted run raises RunStopped, the process never exits, and the
caller's signal handlers and logging are theirs again afterwards.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


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

        from hydrafit.metrics import predict

        x = np.asarray(x, dtype=np.float32)
        return predict(self.model.net, torch.from_numpy(x.reshape(-1, 1))).numpy().reshape(x.shape)


def fit(overrides: Sequence[str] = (), run_dir: str | Path | None = None) -> Result:
    """Train the run `hydrafit-train <overrides>` would train, into `run_dir` (default: a new
    directory under outputs/runs/ of the current directory, named as the CLI names it)."""
    from hydra.core.hydra_config import HydraConfig

    from hydrafit import run_dirs, train
    from hydrafit.config import ConfigError, validate
    from hydrafit.preflight import check_run

    previous = HydraConfig.instance().cfg  # the caller's (none, or a Hydra app's own)
    claimed, created = len(run_dirs.CLAIMED), []
    try:
        cfg = train.compose(list(overrides), run_dir)  # claims a new run dir (hydrafit.run_dirs)
        out = Path(cfg.hydra.runtime.output_dir)
        created = run_dirs.CLAIMED[claimed:] or [d for d in [out, *out.parents] if not d.exists()]
        validate(train.job_config(cfg))  # before anything is written, like the CLI's one line
        check_run(cfg, str(out))
        job = train.start(cfg)
        with run_log(out / f"{cfg.hydra.job.name}.log", cfg):
            trained_cfg, trainer = train.run(job)
            train.optimized_value(trained_cfg, trainer)
        model = trainer.lightning_module
        model.trainer = None  # let the Trainer, its loggers and data go
        return result(out, model)
    except ConfigError:  # bad input, found before or while building: no directory is left
        remove_created(created)
        raise
    finally:
        HydraConfig.instance().cfg = previous


def remove_created(created: list[Path]) -> None:
    """Undo the directories a refused fit made: the run dir, then its new parents if empty."""
    if created:
        shutil.rmtree(created[0], ignore_errors=True)
    for parent in created[1:]:
        with contextlib.suppress(OSError):
            parent.rmdir()


def load(run_dir: str | Path, ckpt: str = "last") -> Result:
    """A finished run (a single run's directory or one job's of a sweep), its model from
    checkpoints/<ckpt>.ckpt ("last" or "best"). A path that is not such a run raises ConfigError."""
    from omegaconf import OmegaConf

    from hydrafit.evaluate import check_request, load_model

    path = check_request(OmegaConf.create({"run": str(run_dir), "ckpt": ckpt, "input": None}))
    return result(path.parent.parent, load_model(path)[0])


def result(run_dir: Path, model) -> Result:
    """The Result of the run in `run_dir` whose trained model is `model`."""
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return Result(run_dir, run_config(run_dir), metrics, model.cpu().eval())


def run_config(run_dir: Path):
    """The run's .hydra/config.yaml with its ${hydra:...} interpolations resolved against its
    .hydra/hydra.yaml (the output dir: `run_dir`), usable outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from hydrafit.evaluate import run_config as recorded_config

    hydra_cfg = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml")  # what ${hydra:...} reads
    hydra_cfg.hydra.runtime.output_dir = str(run_dir.absolute())
    previous, HydraConfig.instance().cfg = HydraConfig.instance().cfg, hydra_cfg
    try:
        return OmegaConf.create(OmegaConf.to_container(recorded_config(run_dir), resolve=True))
    finally:
        HydraConfig.instance().cfg = previous


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
