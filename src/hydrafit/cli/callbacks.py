"""The Hydra callbacks conf/ names: checks before Hydra creates a directory (Preflight) and the
sweep summary kept after every job (SweepSummary). Both end the process where a command must
stop: one line and exit code 2 for bad input, 1 or 130 for a sweep that did not complete."""
from __future__ import annotations

import atexit
import logging
import math
import os
import sys
import time
from pathlib import Path

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hydrafit.config.errors import ConfigError, refuse
from hydrafit.config.preflight import check_multirun, check_request, check_run
from hydrafit.engine import signals
from hydrafit.rundir.files import FINISHED, read_metrics
from hydrafit.sweeps.summary import REWRITE_SECONDS, check_resume, finish, update_after_job, write_tensorboard_experiment

log = logging.getLogger(__name__)


class Preflight(Callback):
    """Runs the checks of `command` (train or eval) before Hydra creates any directory; a problem
    ends the command with one line and exit code 2, nothing created (conf/hydra/default.yaml,
    conf/eval.yaml)."""

    def __init__(self, command: str = "train"):
        self.command = command

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if self.command == "eval":
            failing_in_one_line(check_request, config, program="hydrafit-eval")
        else:
            failing_in_one_line(check_run, config, config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        failing_in_one_line(check_multirun, config)


def failing_in_one_line(check, *args, program: str = "hydrafit-train") -> None:
    """Run `check`; a ConfigError ends the process with one line and exit code 2."""
    try:
        check(*args)
    except ConfigError as error:
        refuse(str(error), program)


class SweepSummary(Callback):
    """Keeps <sweep dir>/summary.csv and summary.md current after every job (in the job's own
    process, so also under joblib; at most once a REWRITE_SECONDS) and writes them with
    sweep.png when the sweep ends. Hydra 1.3 calls on_multirun_end only if no job failed: an
    atexit hook, registered when the sweep starts, writes the summary on the failure path (Hydra
    then exits 1). Where Hydra would exit 0 although a job did not complete (Optuna,
    max_failure_rate), on_multirun_end exits 1. A job stopped by Ctrl-C/SIGTERM stops the sweep
    (exit 130), resumable with resume_sweep=."""

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.launcher_pid: int | None = None  # jobs of hydra/launcher=joblib run in other processes
        self.rewritten = -math.inf  # time.monotonic() of this process's last rewrite of the tables

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if config.get("resume_sweep") is not None:
            refuse("resume_sweep: continues a sweep; run it with -m (--multirun)")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        failing_in_one_line(check_resume, config)
        self.sweep_dir, self.launcher_pid = Path(str(config.hydra.sweep.dir)), os.getpid()
        record = self.sweep_dir / "multirun.yaml"
        if not record.exists():  # BasicSweeper writes it too; Optuna's sweeper does not
            try:
                self.sweep_dir.mkdir(parents=True, exist_ok=True)
                OmegaConf.save(config, record)
            except OSError:
                pass  # an unwritable sweep dir: Preflight says so in one line
        write_tensorboard_experiment(self.sweep_dir, config)
        atexit.register(self._at_exit)

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        status, _, error = read_metrics(Path(config.hydra.runtime.output_dir) / "metrics.json")
        if status == "pruned":
            log.info("Job #%s pruned: %s", config.hydra.job.num, error)
        elif job_return.status == JobStatus.FAILED or status not in ("completed", "incomplete"):
            log.error("Job #%s %s%s", config.hydra.job.num, status.replace("incomplete", "failed"),
                      f": {error}" if error else "")
        now = time.monotonic()
        rewrite = now - self.rewritten >= REWRITE_SECONDS
        update_after_job(Path(str(config.hydra.sweep.dir)), int(config.hydra.job.num), rewrite)
        if rewrite:
            self.rewritten = now
        # a signal that came as the job's last epoch ended (GracefulStop) stops the sweep too
        if (status == "interrupted" or signals.requested) and os.getpid() == self.launcher_pid:
            # Ctrl-C or SIGTERM stopped this job gracefully (GracefulStop): stop the sweep too,
            # rather than start the next job. The atexit hook writes the summary.
            log.error("Sweep stopped; continue it with: hydrafit-train -m resume_sweep=%s", self.sweep_dir)
            sys.exit(130)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        atexit.unregister(self._at_exit)
        jobs = finish(self.sweep_dir)
        # A job whose metrics.json records a failure; not one without metrics.json (callbacks=none),
        # nor one still running (another worker's trial of a shared Optuna search).
        if any(j.status not in (*FINISHED, "incomplete", "running") for j in jobs):
            sys.exit(1)

    def _at_exit(self) -> None:
        finish(self.sweep_dir)
