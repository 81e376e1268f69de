"""The Hydra callbacks conf/ names: checks before Hydra creates a directory (Preflight) and the
sweep summary kept after every job (SweepSummary). Both end the process where a command must
stop: one line and exit code 2 for bad input, 1 or 130 for a sweep that did not complete."""
from __future__ import annotations

import atexit
import contextlib
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

from hydrafit.compat.hydra import returned_value
from hydrafit.config.errors import ConfigError, refuse
from hydrafit.config.preflight import check_multirun, check_request, check_run
from hydrafit.config.view import CallbacksView
from hydrafit.engine import signals
from hydrafit.report.status import RunStopped
from hydrafit.rundir.files import FINISHED, WriteError, as_write_error, read_metrics, still_running, write_atomic
from hydrafit.sweeps.records import GRID_SWEEPERS
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
    (exit 130), resumable with resume_sweep=. A job's expected failure (`expected`: a stop, bad
    input, a full disk) is logged in one line, its traceback only in the job's log file, and
    handed to a grid sweeper as done, so that Hydra prints no traceback and the sweep goes on;
    on_multirun_end then exits 1 for it."""

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
                write_atomic(record, OmegaConf.to_yaml(config))  # what OmegaConf.save writes
            except OSError:
                pass  # an unwritable sweep dir: Preflight says so in one line
        write_tensorboard_experiment(self.sweep_dir, config)
        atexit.register(self._at_exit)

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        status, _, error = read_metrics(Path(config.hydra.runtime.output_dir) / "metrics.json")
        failure = returned_value(job_return) if job_return.status == JobStatus.FAILED else None
        if status == "pruned":
            log.info("Job #%s pruned: %s", config.hydra.job.num, error)
        elif failure is not None or status not in ("completed", "incomplete"):
            error = error or (failure and f"{type(failure).__name__}: {failure}")  # one the disk kept unrecorded
            log.error("Job #%s %s%s", config.hydra.job.num, status.replace("incomplete", "failed"),
                      f": {error}" if error else "")
        if failure is not None and status != "pruned":
            log_to_job_file(failure, config.hydra.job.num)
        if expected(failure) and str(config.hydra.sweeper._target_).endswith(GRID_SWEEPERS):
            # Said in full (metrics.json, the line above, the summary): the grid sweeper would
            # raise it again once its batch has run, as a traceback that ends the sweep, its
            # later batches not run. on_multirun_end exits 1 for it.
            job_return.status = JobStatus.COMPLETED
        now = time.monotonic()
        rewrite = now - self.rewritten >= REWRITE_SECONDS
        try:
            update_after_job(Path(str(config.hydra.sweep.dir)), int(config.hydra.job.num), rewrite)
        except WriteError as problem:  # the sweep's end writes the summary again, or says why not
            log.debug("summary not rewritten: %s", problem)
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
        try:
            jobs = finish(self.sweep_dir)
        except WriteError:  # said in one line by finish
            sys.exit(1)
        if any(did_not_finish(job, records_every_job(config)) for job in jobs):
            sys.exit(1)

    def _at_exit(self) -> None:
        with contextlib.suppress(WriteError):  # said in one line by finish; the exit code is Hydra's
            finish(self.sweep_dir)


def did_not_finish(job, recorded: bool) -> bool:
    """Whether `job` of a sweep that has ended failed: its metrics.json records a failure or
    cannot be read, or it has none where every job records one (`recorded`): a failure the disk
    kept from being recorded. Not a job still running (another worker's trial of a shared Optuna
    search), nor one without metrics.json otherwise (callbacks=none)."""
    if job.status in FINISHED or still_running(job.status):
        return False
    return job.status != "incomplete" or recorded or bool(job.error)


def records_every_job(config: DictConfig) -> bool:
    """Whether every job of the sweep `config` leaves a metrics.json: its callback is configured
    (not callbacks=none) and every job ran from here (a grid, not a search other workers share)."""
    return ("metrics_file" in CallbacksView.of(config.get("callbacks")).names
            and str(config.hydra.sweeper._target_).endswith(GRID_SWEEPERS))


def expected(failure: BaseException | None) -> bool:
    """A job's failure that its metrics.json and one line say in full, without a traceback: a stop
    (diverged, interrupted, pruned, cancelled: RunStopped), bad input (ConfigError), a disk that
    would not take its files (a write error)."""
    return isinstance(failure, (RunStopped, ConfigError)) or (
        failure is not None and as_write_error(failure, Path()) is not None)


def log_to_job_file(failure: BaseException, num) -> None:
    """`failure`'s traceback into the job's log file (Hydra's job logging, still the job's when
    its callbacks end it: <job dir>/<task name>.log), not onto the console."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "Job #%s's failure:", (num,),
                            (type(failure), failure, failure.__traceback__))
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
