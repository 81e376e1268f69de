"""TensorBoard's HPARAMS tab: the hyperparameters each run logs, and the experiment a sweep declares.

Every run logs its config as hyperparameters (hydrafit.report.loggers.log_hyperparameters, through
Lightning's TensorBoardLogger, whose experiment summary lists them unordered). TensorBoard's
hparams plugin uses the first experiment summary it finds among the runs and shows its
hyperparameters that differ first, then by name, ticking the first five and the first five
metrics (tensorboard/plugins/hparams/backend_context.py, _sort_and_reduce_to_hparams_limit).
Left to the jobs' summaries, a sweep's table opens on five constant dataset/* columns. So a
sweep writes its own experiment summary at the sweep root, before its first job: its run "."
sorts before the job runs "<n>/tensorboard/...", the swept keys are marked as differing and
the optimized metric comes first. Only protobufs and TensorBoard's own event writer: no torch.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hydrafit.rundir.files import final_metric_names

log = logging.getLogger(__name__)


def hyperparameters(cfg: DictConfig) -> dict:
    """What a run logs as hyperparameters: its dataset, model, optimizer and scheduler config,
    trainer.max_epochs and the seed, resolved to plain containers."""
    params = {k: OmegaConf.to_container(cfg[k], resolve=True)
              for k in ("dataset", "model", "optimizer", "scheduler") if cfg[k]}
    return params | {"trainer": {"max_epochs": cfg.trainer.max_epochs}, "seed": cfg.seed}


def flat_params(params: dict, prefix: str = "") -> dict:
    """{'optimizer/lr': 0.01, 'model/hidden_dims': '[16]', ...}: nested hyperparameters as
    Lightning's TensorBoardLogger logs them (dict keys joined with '/'; any value but a bool,
    int, float or str as its str())."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= flat_params(value, name + "/")
        else:
            flat[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat


def log_session(logger, params: dict, metrics: dict[str, float]) -> None:
    """A sweep job's HPARAMS entry: what Lightning's TensorBoardLogger.log_hyperparams(params,
    metrics) writes (hparams.yaml, the metrics' scalars, the session's start and end), minus
    its experiment summary: the sweep's own (write_sweep_experiment) must be the only one, as
    TensorBoard takes the first it finds, in no set order of runs (its Rust data server)."""
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    logger.log_hyperparams(params)  # without metrics: hparams.yaml only (default_hp_metric is off)
    logger.log_metrics(metrics)
    _, session_start, session_end = hparams_summaries(flat_params(params), metrics)
    logger.experiment.file_writer.add_summary(session_start)
    logger.experiment.file_writer.add_summary(session_end)


def swept_names(swept: list[str], names: list[str]) -> list[str]:
    """The hyperparameter of each swept key: optimizer.lr -> optimizer/lr, a config group
    (optimizer=adam,sgd) -> optimizer/_target_; keys no run logs (mlp_shape.width) are left out."""
    found = []
    for key in swept:
        name = key.replace(".", "/")
        found += [n for n in (name, f"{name}/_target_") if n in names][:1]
    return list(dict.fromkeys(found))


def sweep_experiment(hparams: list[str], differing: list[str], metrics: list[str]):
    """TensorBoard's experiment summary (a Summary protobuf): `hparams`, those in `differing`
    marked as differing (shown first), and `metrics` in this order (the first five shown)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    experiment = api_pb2.Experiment(
        hparam_infos=[api_pb2.HParamInfo(name=n, differs=n in differing) for n in hparams],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in metrics])
    content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(experiment=experiment))
    return Summary(value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=content)])


def write_sweep_experiment(sweep_dir: Path, cfg: DictConfig, swept: list[str]) -> None:
    """The sweep's experiment summary, in an event file at `sweep_dir`, once (a resumed sweep
    keeps its own): the swept keys first, then the other hyperparameters of the sweep's base
    config; `optimized_metric` first, then the other final metrics."""
    if "TensorBoard" not in str((cfg.get("logger") or {}).get("_target_", "")) or any(
            sweep_dir.glob("events.out.tfevents.*")):
        return
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    try:
        names = list(flat_params(hyperparameters(cfg)))
    except Exception as error:  # an interpolation only a job can resolve: the jobs' summaries stand
        log.debug("no sweep-level HPARAMS summary: %s", error)
        return
    d = cfg.dataset
    reported = final_metric_names((d.get("val_fraction") or 0) > 0, d.get("baseline_degree") is not None,
                                  "path" not in d)
    first = swept_names(swept, names)
    metrics = list(dict.fromkeys([cfg.optimized_metric, *reported]))
    writer = EventFileWriter(str(sweep_dir))
    writer.add_event(Event(wall_time=time.time(), summary=sweep_experiment(first + [n for n in names if n not in first],
                                                    first, metrics)))
    writer.close()
