"""logger=mlflow: Lightning's MLFlowLogger on a local SQLite store, as hydrafit's runs need it.

    pip install "hydrafit[mlflow]"
    hydrafit-train logger=mlflow                   # runs in outputs/mlflow.db of the launch directory
    mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db   # the UI needs the full mlflow package
"""
from __future__ import annotations

import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities import rank_zero_only

from hydrafit.rundir.locks import sqlite_lock

SQLITE = "sqlite:///"


class MLflowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger, plus:

    - metrics are written when hydrafit hands them over (`save()`, about once a second: see
      models.Regressor.log_epoch_losses), one log_batch for all, not one per epoch: a SQLite
      write costs ~20 ms here, more than 20 epochs of the seed;
    - `artifacts`, files of the run (fit.png, .hydra/config.yaml) logged when the run ends;
    - the run is named and tagged after hydrafit's run dir, and in a sweep after the sweep
      dir and job number (tags hydrafit.sweep_dir, hydrafit.job_num);
    - several processes can start on one new SQLite store at once (a joblib sweep): creating
      the store and the experiment happens under a file lock (two creations race: mlflow #4123).
    """

    def __init__(self, experiment_name: str = "hydrafit", tracking_uri: str | None = None,
                 run_name: str | None = None, tags: dict | None = None,
                 artifact_location: str | None = None, artifacts: list[str] = ()):
        run_name, tags = hydra_run_identity(run_name, tags or {})
        if artifact_location is None and tracking_uri and tracking_uri.startswith(SQLITE):
            artifact_location = str(Path(tracking_uri[len(SQLITE):]).parent / "mlartifacts")
        with sqlite_lock(tracking_uri or ""):  # the one lock Optuna studies use too
            super().__init__(experiment_name=experiment_name, run_name=run_name, tracking_uri=tracking_uri,
                             tags=tags, artifact_location=artifact_location)
            if rank_zero_only.rank == 0:
                self.experiment  # creates the experiment (and the run) now, under the lock
        self.artifacts, self._pending = [Path(a) for a in artifacts], []

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
        if not self._initialized:
            return
        self.save()
        for path in self.artifacts:
            if path.is_file():
                self.experiment.log_artifact(self.run_id, str(path))
        super().finalize(status)


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
    return run_name or f"{hydra.job.num}: {hydra.job.override_dirname or 'defaults'}", tags
