"""logger=mlflow: Lightning's MLFlowLogger on a local SQLite store, as hydrafit's runs need it.

    pip install "hydrafit[mlflow]"
    hydrafit-train logger=mlflow                   # runs in outputs/mlflow.db of the launch directory
    pip install "hydrafit[ui]"                     # the UI: full mlflow, the version the extra writes with
    mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db
"""
from __future__ import annotations

import functools
import logging
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from hydrafit.rundir.locks import sqlite_lock

log = logging.getLogger(__name__)

SQLITE = "sqlite:///"
STATUSES = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED"}  # as Lightning's finalize maps them


class MLflowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger, plus:

    - metrics are written when hydrafit hands them over (`save()`, about once a second: see
      models.Regressor.log_epoch_losses), one log_batch for all, not one per epoch: a SQLite
      write costs ~20 ms here, more than 20 epochs of the seed;
    - `artifacts`, files of the run (fit.png, .hydra/config.yaml) logged when the run ends;
    - the run is named and tagged after hydrafit's run dir, and in a sweep after the sweep
      dir and job number (tags hydrafit.sweep_dir, hydrafit.job_num);
    - `start_time`, `end_time` (ms since the epoch, MLflow's unit): when the run's fit started
      and ended, for a run logged after its fit (a population member); None: when the logger is
      made and finalized;
    - several processes can start on one new SQLite store at once (a joblib sweep): creating
      the store and the experiment happens under a file lock (two creations race: mlflow #4123).
    """

    def __init__(self, experiment_name: str = "hydrafit", tracking_uri: str | None = None,
                 run_name: str | None = None, tags: dict | None = None,
                 artifact_location: str | None = None, artifacts: list[str] = (),
                 start_time: int | None = None, end_time: int | None = None):
        from mlflow import MlflowClient, get_tracking_uri

        run_name, tags = hydra_run_identity(run_name, tags or {})
        # null: MLflow's default store, for this client and Lightning's alike (Lightning's own
        # default, a plain file store, is refused by current MLflow)
        tracking_uri = tracking_uri or get_tracking_uri()
        if artifact_location is None and tracking_uri.startswith(SQLITE):
            artifact_location = str(Path(tracking_uri[len(SQLITE):]).parent / "mlartifacts")
        with sqlite_lock(tracking_uri):  # the one lock Optuna studies use too
            run_id = None
            if rank_zero_only.rank == 0:  # the experiment and the run, now, under the lock
                run_id = create_run(MlflowClient(tracking_uri), experiment_name, artifact_location,
                                    run_name, tags, start_time)
            super().__init__(experiment_name=experiment_name, tracking_uri=tracking_uri, run_id=run_id,
                             artifact_location=artifact_location)
            if run_id:
                self.experiment  # as Lightning does on first use: mlflow.set_tracking_uri
        self.artifacts, self.end_time, self._pending = [Path(a) for a in artifacts], end_time, []

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(key=k, value=float(v), timestamp=now, step=step or 0)
                          for k, v in metrics.items() if not isinstance(v, str)]

    @rank_zero_only
    def save(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), 1000):  # MLflow's limit per log_batch
            self.experiment.log_batch(run_id=self.run_id, metrics=pending[start:start + 1000])

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.save()
        for path in self.artifacts:
            if path.is_file():
                self.experiment.log_artifact(self.run_id, str(path))
        if self.end_time is None:
            super().finalize(status)
        else:  # Lightning's finalize ends the run now; this one ended when its fit did
            self.experiment.set_terminated(self.run_id, STATUSES.get(status, status), end_time=self.end_time)


def create_run(client, experiment_name: str, artifact_location: str | None, run_name: str | None,
               tags: dict, start_time: int | None) -> str:
    """The id of a new run of the experiment (created if absent, as Lightning's MLFlowLogger
    creates it), started at `start_time` (None: now), with MLflow's context tags (user, source)
    as Lightning adds them."""
    from mlflow.tracking.context.registry import resolve_tags

    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None and experiment.lifecycle_stage != "deleted":
        experiment_id = experiment.experiment_id
    else:
        experiment_id = client.create_experiment(experiment_name, artifact_location=artifact_location)
    run = client.create_run(experiment_id, start_time=start_time, tags=resolve_tags(tags), run_name=run_name)
    return run.info.run_id


def hydra_run_identity(run_name: str | None, tags: dict) -> tuple[str | None, dict]:
    """(run name, tags) after the Hydra run or sweep job this is: the run dir's name, or the
    job's number and overrides, as TensorBoard names sweep runs."""
    if not HydraConfig.initialized():
        return run_name, tags
    hydra = HydraConfig.get()
    tags = {"hydrafit.run_dir": hydra.runtime.output_dir, **tags}
    if hydra.mode != RunMode.MULTIRUN:
        return run_name or Path(hydra.runtime.output_dir).name, tags
    tags |= {"hydrafit.sweep_dir": str(Path(hydra.sweep.dir).absolute()), "hydrafit.job_num": str(hydra.job.num)}
    return run_name or f"{hydra.job.num}: {swept_first(hydra) or 'defaults'}", tags


def swept_first(hydra) -> str:
    """The job's override_dirname (its overrides but Hydra's exclude_keys, formatted as Hydra
    formats them) with the swept keys first, in the sweep's order, then the others sorted as
    Hydra sorts them: the start of a name is what a run list shows."""
    naming = hydra.job.config.override_dirname
    lines = {line.split("=", 1)[0].lstrip("+~"): line for line in hydra.overrides.task}
    lines = {key: line for key, line in lines.items() if key not in naming.exclude_keys}
    first = [key for key in swept_keys(Path(hydra.sweep.dir, "multirun.yaml").absolute()) if key in lines]
    ordered = [lines[key] for key in first] + sorted(line for key, line in lines.items() if key not in first)
    return naming.item_sep.join(ordered).replace("=", naming.kv_sep)


@functools.lru_cache(maxsize=4)
def swept_keys(multirun_yaml: Path) -> tuple[str, ...]:
    """The keys a sweep sweeps (`a,b`, `range()`, `interval()`, ...: its sweeper's params, then its
    command line's), from Hydra's record of the sweep; none if it cannot be read."""
    try:
        sweep = OmegaConf.load(multirun_yaml).hydra
        params = OmegaConf.to_container(sweep.sweeper.params, resolve=False) if sweep.sweeper.get("params") else {}
        overrides = [f"{k}={v}" for k, v in params.items()] + list(sweep.overrides.task)
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as error:  # no record (a launcher that writes none), or one Hydra cannot parse
        log.debug("run names in Hydra's order: %s: %s", multirun_yaml, error)
        return ()
    return tuple(dict.fromkeys(o.key_or_group for o in parsed if o.is_sweep_override()))
