"""A sweep as its directory tells it: the plan (multirun.yaml) and each job (its directory).

Never from memory: with hydra/launcher=joblib jobs run in other processes, and Hydra 1.3 skips
on_multirun_end once a job failed. A running sweep's jobs are reread only when their
metrics.json changed (collect with reuse), so the work between two jobs does not grow with the
jobs done (benchmarks/sweep_overhead.py).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from hydrafit.rundir.files import read_metrics, still_running
from hydrafit.sweeps.grammar import grid_jobs, parse_sweep
from hydrafit.sweeps.study import STATUS, is_search, storage_url, trial_jobs

log = logging.getLogger(__name__)


GRID_SWEEPERS = ("BasicSweeper", "ResumableSweeper")  # sweepers whose job list is known up front


PBT_STATE = "pbt_population.ckpt"  # a PBT run's live population, saved at each interval (resume_sweep=)
IGNORED_KEYS = ("resume_sweep", "hparams_search", "resume")  # overrides that say how, not what, a job ran


@dataclass
class Job:
    """One job of a sweep, as its directory tells it."""

    num: int
    overrides: dict[str, str]
    # completed|pruned|failed|diverged|interrupted|died|running|running (host X)|incomplete|missing
    status: str = "missing"
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    wall_seconds: float | None = None
    fit_png: Path | None = None
    continued: bool = False  # continued from its last.ckpt (resume_sweep=, resume=): .hydra/resume_*/
    rows: dict = field(default_factory=dict, repr=False, compare=False)  # rendered, by columns
    stamp: tuple | None = field(default=None, repr=False, compare=False)  # of its metrics.json, when read

    @functools.cached_property
    def finite(self) -> dict[str, float]:
        """Its final metrics that are finite numbers (what statistics over seeds take)."""
        return {k: v for k, v in self.metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


@dataclass
class Plan:
    """What the sweep set out to do, from <sweep dir>/multirun.yaml (empty if there is none)."""

    metric: str = "truth/rmse"
    maximize: bool = False
    n_jobs: int | None = None                      # None: unknown
    overrides: dict[int, list[str]] = field(default_factory=dict)  # known up front for grids
    resumable: bool = False
    swept: list[str] | None = None                 # keys given as sweeps (a,b / interval(...))
    trials: dict | None = None                     # an Optuna search: its study's trials by number
    study: tuple[str, str] | None = None           # an Optuna search: (storage URL, study name)


def parse_overrides(overrides) -> dict[str, str]:
    """['optimizer.lr=0.01', '+x=1'] -> {'optimizer.lr': '0.01', 'x': '1'}, minus IGNORED_KEYS."""
    pairs = (str(o).split("=", 1) for o in overrides if "=" in str(o))
    parsed = {key.lstrip("+~"): value for key, value in pairs}
    return {k: v for k, v in parsed.items() if k not in IGNORED_KEYS}


def read_plan(sweep_dir: Path) -> Plan:
    """The Plan of a sweep; a partial one if multirun.yaml is missing or cannot be parsed
    (e.g. glob(), which needs Hydra's config loader): then the job directories tell. Parsed once
    per version of the file: a 1,000-job grid took ~0.1 s to expand, after every job."""
    try:
        stat = (sweep_dir / "multirun.yaml").stat()
    except OSError:
        return Plan()
    plan = _plan_of(sweep_dir / "multirun.yaml", stat.st_mtime_ns, stat.st_size)
    if plan.study is None:
        return plan
    return dataclasses.replace(plan, trials=trial_jobs(*plan.study))  # also other workers' trials


@functools.lru_cache(maxsize=8)
def _plan_of(path: Path, mtime_ns: int, size: int) -> Plan:
    try:
        cfg = OmegaConf.load(path)
        sweeper, task = cfg.hydra.sweeper, cfg.hydra.overrides.task
    except Exception as error:  # a damaged record: the job directories still tell
        log.warning("cannot read %s: %s", path, error)
        return Plan()
    direction = str(sweeper.get("direction", "minimize")).lower()
    plan = Plan(metric=str(cfg.get("optimized_metric", "truth/rmse")), maximize="max" in direction)
    params = OmegaConf.to_container(sweeper.params, resolve=False) if sweeper.get("params") else {}
    try:
        keys = [o.get_key_element().lstrip("+~") for o in parse_sweep(task, params) if o.is_sweep_override()]
        plan.swept = [k for k in dict.fromkeys(keys) if k not in IGNORED_KEYS]
        if str(sweeper.get("_target_", "")).endswith(GRID_SWEEPERS):
            jobs = grid_jobs(task, params)
            plan.n_jobs, plan.overrides, plan.resumable = len(jobs), dict(enumerate(jobs)), True
    except Exception as error:
        log.debug("cannot parse the sweep of %s: %s", path.parent, error)
    if sweeper.get("n_trials") is not None:
        plan.n_jobs = int(sweeper.n_trials)
    if str(sweeper.get("_target_", "")).endswith(".PBTSweeper"):  # one population: jobs 0..population-1
        plan.resumable, plan.n_jobs = True, int(sweeper.population)
    if is_search(sweeper):  # read_plan asks the study for its trials (hydra.sweeper.join: all workers')
        plan.resumable, plan.n_jobs = True, None
        plan.study = (storage_url(sweeper.get("storage"), path.parent), str(sweeper.study_name))
    return plan


def job_numbers(sweep_dir: Path) -> set[int]:
    """The numbers of the job directories Hydra created (hydra.sweep.subdir is the job number,
    conf/hydra/default.yaml): the names that are numbers. listdir, not scandir: no object per
    entry (1 ms at 1,000 jobs, after every job; benchmarks/sweep_overhead.py)."""
    return {int(name) for name in os.listdir(sweep_dir) if name.isdigit()}


def job_dirs(sweep_dir: Path) -> dict[int, Path]:
    """Job number -> directory."""
    return {n: sweep_dir / str(n) for n in sorted(job_numbers(sweep_dir))}


SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML was built with it


def read_job(num: int, job_dir: Path | None, planned: list[str] | None = None) -> Job:
    """A Job from its directory (None: never created). Wall time runs from Hydra's job record
    (.hydra/hydra.yaml, written as the job starts; a continued job's latest .hydra/resume_*/) to
    the last metrics.json write."""
    job = Job(num, parse_overrides(planned or []))
    if job_dir is None:
        return job
    record = job_dir / ".hydra" / "overrides.yaml"
    if record.is_file():  # a YAML list of strings; libyaml reads it in ~0.1 ms, OmegaConf.load in ~5
        job.overrides = parse_overrides(yaml.load(record.read_text(), Loader=SAFE_LOADER) or [])
    job.status, job.metrics, job.error = read_metrics(job_dir / "metrics.json")
    start, end = job_dir / ".hydra" / "hydra.yaml", job_dir / "metrics.json"
    if record.is_file():  # a continued job's invocations are recorded beside Hydra's: resume_<time>/
        resumes = sorted(name for name in os.listdir(record.parent) if name.startswith("resume_"))
        job.continued = bool(resumes)
        start = record.parent / resumes[-1] / "hydra.yaml" if resumes else start  # its last attempt's
    ended = not still_running(job.status) and job.status not in ("incomplete", "died")
    if ended and start.is_file() and end.is_file():
        job.wall_seconds = round(end.stat().st_mtime - start.stat().st_mtime, 3)
    if (job_dir / "fit.png").is_file():
        job.fit_png = job_dir / "fit.png"
    return job


# Jobs of a running sweep as this process last read them, by sweep dir and number, with their
# rendered table rows: SweepSummary rereads only the job that just ended (and a started one whose
# metrics.json changed: metrics_stamp), so the work between two jobs does not grow with the jobs
# done (rereading every job dir after every job took 2 s a job by job 1,000; benchmarks/sweep_overhead.py).
SETTLED = frozenset(("completed", "failed", "diverged", "interrupted", "pruned"))  # kept until rerun


_known_jobs: dict[Path, dict[int, Job]] = {}


def collect(sweep_dir: Path, plan: Plan | None = None, reuse: bool = False) -> list[Job]:
    """Every job of the sweep, by number: the ones with a directory, and the planned ones without;
    for an Optuna search, every trial of its study, wherever its job directory is. `reuse`: take
    settled and not-yet-started jobs of a grid as this process read them before (a job directory
    that appeared since is read); see update_after_job."""
    plan = plan or read_plan(sweep_dir)
    numbers = numbers_since(sweep_dir) if reuse and plan.trials is None else job_numbers(sweep_dir)
    if plan.trials is not None:
        return [trial_job(t, sweep_dir / str(n) if n in numbers else None) for n, t in sorted(plan.trials.items())]
    known = _known_jobs.setdefault(sweep_dir, {}) if reuse else {}
    jobs, root = [], os.fspath(sweep_dir)  # paths as text: a pathlib join costs ~3 us, 480 a job
    for n in sorted(numbers.union(range(plan.n_jobs or 0))):
        job = known.get(n)
        if job is not None and job.status in SETTLED:  # most jobs, after a while: one test each
            jobs.append(job)
            continue
        started = n in numbers
        stamp = metrics_stamp(f"{root}/{n}") if started else None
        if job is None or (job.status == "missing" and started) or job.stamp != stamp:
            job = read_job(n, sweep_dir / str(n) if started else None, plan.overrides.get(n))
            job.stamp = stamp
            if reuse:
                known[n] = job
        jobs.append(job)
    return jobs


def metrics_stamp(job_dir: str) -> tuple | None:
    """(mtime, size) of a job's metrics.json, None while it has none: a started job is read again
    only when this changed (or the job ended in this process: update_after_job). A vectorised
    sweep creates hundreds of job directories before any ends; reading each again after every
    job took ~0.2 s a job at 480 jobs on this project's CPU."""
    try:
        stat = os.stat(f"{job_dir}/metrics.json")
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


# Job directories of running sweeps this process has seen, by sweep dir (numbers_since).
_seen_dirs: dict[Path, set[int]] = {}


PROBE = 64  # job directories looked for past the highest seen: more than any launcher runs at once


def numbers_since(sweep_dir: Path) -> set[int]:
    """job_numbers of a running sweep, without listing it again: the numbers seen before and those
    of the next PROBE directories, if they exist now. Launchers start jobs in number order (joblib
    and forked writers a few at a time), so no other can have appeared; a full listing of 1,000
    entries took ~1 ms, after every job (benchmarks/sweep_overhead.py). The first call lists."""
    seen = _seen_dirs.get(sweep_dir)
    if seen is None:
        seen = _seen_dirs[sweep_dir] = job_numbers(sweep_dir)
        return set(seen)
    start, root = max(seen, default=-1) + 1, os.fspath(sweep_dir)
    seen.update(n for n in range(start, start + PROBE) if os.path.isdir(f"{root}/{n}"))
    return set(seen)


def trial_job(trial, job_dir: Path | None) -> Job:
    """The Job of an Optuna trial: from its directory (this sweep's, or another worker's); from
    the study alone where the directory is out of reach (another machine's disk)."""
    job_dir = job_dir or Path(trial.user_attrs["job_dir"])
    if job_dir.is_dir():
        return read_job(trial.number, job_dir)
    return Job(trial.number, {k.lstrip("+~"): str(v) for k, v in trial.params.items()},
               STATUS.get(trial.state.name, "missing"))


def forget_job(sweep_dir: Path, num: int) -> None:
    """Job `num` of a running sweep has ended: the next collect with reuse reads it again."""
    _known_jobs.get(sweep_dir, {}).pop(num, None)
    _seen_dirs.get(sweep_dir, set()).add(num)
