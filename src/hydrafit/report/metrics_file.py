"""metrics.json: `status: running` and who runs it when a fit starts, then the final metrics and
how it ended. write_metrics is its one writer of results, called by the MetricsFile callback of a
single run and for each member of a population (hydrafit.report.member); write_running writes
the start of both."""
from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from hydrafit.metrics import final_metrics
from hydrafit.report.status import run_status
from hydrafit.rundir.files import RUNNING, write_json
from hydrafit.rundir.owner import owner_record


class MetricsFile(pl.Callback):
    """Writes <dirpath>/metrics.json: `status: running` with who runs it (write_running) when
    fit starts, also a resumed one, the final metrics with `status: completed` when it ends. The
    final metrics also go to the logger (filling the HPARAMS tab) and to
    `trainer.callback_metrics`, where `train` reads the optimized metric.
    """

    def __init__(self, dirpath: str):
        self.path = Path(dirpath) / "metrics.json"
        self._start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        if trainer.is_global_zero:
            write_running(self.path, owner_record())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        status, message = run_status(trainer)
        metrics = final_metrics(pl_module.net, trainer.datamodule) if status != "diverged" else {}
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        if trainer.is_global_zero:
            found = pl_module.lr_suggestion  # lr_find=true (hydrafit.engine.single)
            extra = {"lr_find/suggestion": found} if found is not None else {}
            write_metrics(self.path, trainer.loggers, trainer.global_step, metrics | extra,
                          trainer.current_epoch, time.perf_counter() - self._start, status, message)


def write_running(path: Path, owner: dict) -> None:
    """metrics.json of a started fit: `status: running` and its `owner` (rundir.owner.owner_record),
    so that a reader can tell a run that goes on from one whose process was killed."""
    write_json(path, {"status": RUNNING, **owner})


def write_metrics(path: Path, loggers, step: int, metrics: dict, epochs: int, seconds: float,
                  status: str, message: str | None) -> None:
    """The end of a run: its final metrics to every logger (the HPARAMS tab's values; logger=many
    has three) and metrics.json with how it ended (MetricsFile; each member of a population)."""
    for logger in loggers if metrics else ():
        logger.log_metrics(metrics, step=step)
    report = {**metrics, "epochs": epochs, "fit_seconds": round(seconds, 3), "status": status}
    write_json(path, report | ({"error": message} if message else {}))
