"""What a run gives its loggers (TensorBoard, CSV, MLflow): its config as hyperparameters, its
train/loss series, its fit image. One function each, for a single run and for every population
member alike."""
from __future__ import annotations

import math
import struct
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary

from hydrafit.compat.omegaconf import yaml_text
from hydrafit.report.hparams import hyperparameters, log_session
from hydrafit.rundir.files import write_atomic


def log_hyperparameters(loggers, cfg: DictConfig, metric_names) -> None:
    """Give each logger the run's config once: TensorBoard's HPARAMS tab with its final metrics
    as NaN placeholders that MetricsFile overwrites at the end (not Lightning's hp_metric = -1);
    others (CSV, MLflow) the same flattened keys as parameters."""
    params = hyperparameters(cfg)
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    for logger in loggers:
        if hasattr(logger, "experiment") and hasattr(logger.experiment, "add_hparams"):
            metrics = {name: math.nan for name in metric_names}
            if in_sweep:  # the sweep declares the experiment (hydrafit.report.hparams)
                log_session(logger, params, metrics)
            else:
                logger.log_hyperparams(params, metrics)
        else:
            logger.log_hyperparams(params)


def log_scalars(loggers, tag: str, values: list[float], steps: list[int]) -> None:
    """A series of `tag` (a population member's train/loss, every epoch at once) to each logger.
    To TensorBoard as summaries written straight to its event file: what its log_metrics writes,
    at a sixth of its cost (~12 us a point, not ~70, on this project's CPU; 250 a member)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment.file_writer
            for value, step in zip(values, steps):
                writer.add_summary(Summary(value=[Summary.Value(tag=tag, simple_value=value)]), step)
        else:
            for value, step in zip(values, steps):
                logger.log_metrics({tag: value}, step=step)


def log_fit_image(loggers, image: bytes, step: int) -> None:
    """The fit image, PNG bytes, to the TensorBoard loggers (the others get only fit.png)."""
    for logger in loggers:  # isinstance, not duck typing: fast_dev_run's DummyLogger answers anything
        if isinstance(logger, TensorBoardLogger):  # the PNG as it is: what add_figure makes of a figure
            logger.experiment.file_writer.add_summary(png_summary("fit", image), step)


def png_summary(tag: str, image: bytes):
    """A TensorBoard image summary holding `image`, PNG bytes (their size read from the header)."""
    width, height = struct.unpack(">II", image[16:24])  # the PNG IHDR chunk
    picture = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=image)
    return Summary(value=[Summary.Value(tag=tag, image=picture)])


def save_hparams(loggers) -> None:
    """Each TensorBoard logger's hparams.yaml, the text its finalize("success") writes through
    OmegaConf.save (which skips an existing file): 1 ms, not 9, on this project's CPU."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            write_atomic(Path(logger.log_dir, logger.NAME_HPARAMS_FILE), yaml_text(dict(logger.hparams)))


def logger_configs(node: DictConfig | None) -> list[DictConfig]:
    """The `logger` group's loggers: none, one (`_target_` at the top) or several by name (logger=many)."""
    if not node:
        return []
    return [node] if "_target_" in node else [c for c in node.values() if c]


def fit_span(logger: DictConfig, started: float | None, seconds: float) -> dict:
    """An MLflow run logged after its fit (a population member's) spans the fit, `seconds` from
    `started` (time.time()), not the moment it is written."""
    if started is None or not logger._target_.endswith(".MLflowLogger"):
        return {}
    return {"start_time": round(started * 1000), "end_time": round((started + seconds) * 1000)}


def purge_step(logger: DictConfig, resume_step: int | None) -> dict:
    """TensorBoard drops the events a crashed run wrote at or after the step a resumed run redoes."""
    return {"purge_step": resume_step} if resume_step and "TensorBoard" in logger._target_ else {}
