"""Sweep summaries: what `hydrafit-train -m ...` leaves in its sweep dir, and `hydrafit-sweep-report`.

    hydrafit-train -m optimizer.lr=0.003,0.01,0.03 model.hidden_dims=[8],[16],[32]
    hydrafit-sweep-report outputs/multiruns/<date>_<time>          # rebuild at any time, even mid-sweep
    hydrafit-train -m resume_sweep=outputs/multiruns/<date>_<time>  # run only the jobs not completed

The summary (summary.csv, summary.md, sweep.png) is rebuilt from the files each job leaves
(.hydra/overrides.yaml, metrics.json, fit.png), never from memory: with hydra/launcher=joblib jobs
run in other processes, and Hydra 1.3 skips on_multirun_end once a job failed. SweepSummary
(a Hydra callback, conf/hydra/default.yaml) rewrites the tables after every job (at most once a
second) and everything when the sweep ends; an atexit hook covers the end Hydra skips.
"""
from __future__ import annotations

import argparse
import atexit
import collections
import csv
import dataclasses
import functools
import io
import itertools
import json
import logging
import math
import operator
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

GRID_SWEEPERS = ("BasicSweeper", "ResumableSweeper")  # sweepers whose job list is known up front
IGNORED_KEYS = ("resume_sweep", "hparams_search")     # overrides that say how, not what, a job ran
NOT_METRICS = ("status", "error")
# A job's ends that are results: a pruned trial (hparams_search=optuna) was stopped on purpose.
FINISHED = ("completed", "pruned")


def _hidden_dims(width, depth):
    """${hydrafit.hidden_dims:w,d} = [w] * d: hparams_search=optuna searches MLP width and depth."""
    return OmegaConf.create([int(width)] * int(depth))


def _tensorboard_version(mode, override_dirname) -> str:
    """The TensorBoard logger's version: '' in a single run (events in <run>/tensorboard/), the
    job's overrides in a sweep, so `tensorboard --logdir <sweep dir>` names each run
    <job num>/tensorboard/<overrides>. Cut to 200 characters (file names stop at 255)."""
    if getattr(mode, "name", mode) != "MULTIRUN":
        return ""
    return (override_dirname or "defaults")[:200]


OmegaConf.register_new_resolver("hydrafit.hidden_dims", _hidden_dims, replace=True)
OmegaConf.register_new_resolver("hydrafit.tensorboard_version", _tensorboard_version, replace=True)


def register_sweeper() -> None:
    """Make hydra/sweeper=resumable, hydra/sweeper=optuna and hydra/launcher=vectorized known to
    Hydra. Its plugin scan finds them in a regular install; in an editable one setuptools' import
    hook hides src/hydra_plugins from pkgutil, so hydrafit.train calls this (Hydra's documented
    manual registration) before Hydra composes. None of these modules imports Optuna or torch."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # the scan first: it re-executes modules it finds already imported
    from hydra_plugins.hydrafit_sweeper.optuna_sweeper import OptunaSweeper  # these store their configs
    from hydra_plugins.hydrafit_sweeper.resumable_sweeper import ResumableSweeper
    from hydra_plugins.hydrafit_sweeper.vectorized_launcher import VectorizedLauncher

    plugins.register(ResumableSweeper)
    plugins.register(OptunaSweeper)
    plugins.register(VectorizedLauncher)


@dataclass
class Job:
    """One job of a sweep, as its directory tells it."""

    num: int
    overrides: dict[str, str]
    status: str = "missing"  # completed|pruned|failed|diverged|interrupted|running|incomplete|missing
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    wall_seconds: float | None = None
    fit_png: Path | None = None
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


def parse_sweep(task_overrides, params=None, config_loader=None) -> list:
    """Hydra's parsed overrides of a sweep: sweeper params first, then the command line's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    arguments = [f"{k}={v}" for k, v in (params or {}).items()] + [str(o) for o in task_overrides]
    return OverridesParser.create(config_loader=config_loader).parse_overrides(arguments)


def grid_jobs(task_overrides, params=None, config_loader=None) -> list[list[str]]:
    """The overrides of each job of a grid sweep, in Hydra's job-number order (as BasicSweeper)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    parsed = parse_sweep(task_overrides, params, config_loader)
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


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
    from hydrafit.study import trial_jobs  # the study lists every trial, also other workers'

    return dataclasses.replace(plan, trials=trial_jobs(*plan.study))


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
    from hydrafit.study import is_search

    if is_search(sweeper):  # read_plan asks the study for its trials (hydra.sweeper.join: all workers')
        from hydrafit.study import storage_url

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


def read_metrics(path: Path) -> tuple[str, dict[str, float], str]:
    """(status, final metrics, error) of a job's metrics.json; 'incomplete' if it has none yet."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return "incomplete", {}, ""
    except (OSError, ValueError) as error:
        return "incomplete", {}, f"metrics.json unreadable ({type(error).__name__})"
    if not isinstance(data, dict):
        return "incomplete", {}, "metrics.json is not a JSON object"
    metrics = {k: v for k, v in data.items()
               if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return str(data.get("status", "incomplete")), metrics, str(data.get("error", ""))


SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML was built with it


def read_job(num: int, job_dir: Path | None, planned: list[str] | None = None) -> Job:
    """A Job from its directory (None: never created). Wall time runs from Hydra's job record
    (.hydra/hydra.yaml, written as the job starts) to the last metrics.json write."""
    job = Job(num, parse_overrides(planned or []))
    if job_dir is None:
        return job
    record = job_dir / ".hydra" / "overrides.yaml"
    if record.is_file():  # a YAML list of strings; libyaml reads it in ~0.1 ms, OmegaConf.load in ~5
        job.overrides = parse_overrides(yaml.load(record.read_text(), Loader=SAFE_LOADER) or [])
    job.status, job.metrics, job.error = read_metrics(job_dir / "metrics.json")
    start, end = job_dir / ".hydra" / "hydra.yaml", job_dir / "metrics.json"
    if job.status not in ("running", "incomplete") and start.is_file() and end.is_file():
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


def update_after_job(sweep_dir: Path, num: int, rewrite: bool = True) -> None:
    """The bookkeeping between two jobs: summary.csv and summary.md with job `num` read again
    and the other finished jobs as this process last read them (benchmarks/sweep_overhead.py).
    `rewrite` False: job `num` is only marked to be read again at the next rewrite."""
    _known_jobs.get(sweep_dir, {}).pop(num, None)
    _seen_dirs.get(sweep_dir, set()).add(num)
    if rewrite:
        write_summary(sweep_dir, figure=False, reuse=True)


def trial_job(trial, job_dir: Path | None) -> Job:
    """The Job of an Optuna trial: from its directory (this sweep's, or another worker's); from
    the study alone where the directory is out of reach (another machine's disk)."""
    from hydrafit.study import STATUS

    job_dir = job_dir or Path(trial.user_attrs["job_dir"])
    if job_dir.is_dir():
        return read_job(trial.number, job_dir)
    return Job(trial.number, {k.lstrip("+~"): str(v) for k, v in trial.params.items()},
               STATUS.get(trial.state.name, "missing"))


def swept_keys(jobs: list[Job], plan: Plan) -> list[str]:
    """The keys the sweep was given as sweeps; without multirun.yaml, the override keys whose value
    differs between jobs (all of them if only one job has overrides)."""
    if plan.swept is not None:
        return plan.swept
    known = [j.overrides for j in jobs if j.overrides]
    keys = list(dict.fromkeys(k for o in known for k in o))
    if len(known) < 2:
        return keys
    return [k for k in keys if len({o.get(k) for o in known}) > 1]


def metric_columns(jobs: list[Job], metric: str) -> list[str]:
    """The optimized metric first, then every other final metric in metrics.json's order."""
    names = dict.fromkeys(itertools.chain.from_iterable(j.metrics for j in jobs))  # keys walked in C
    return [metric] + [n for n in names if n != metric]


def ranked(jobs: list[Job], plan: Plan) -> list[Job]:
    """Completed jobs best first by the optimized metric, then the others by job number. Each
    job's sort key is kept on it (a finished job's does not change)."""
    def key(job: Job) -> tuple[float, int]:
        value = job.metrics.get(plan.metric)
        if job.status != "completed" or value is None or math.isnan(value):
            return math.inf, job.num
        return (-value if plan.maximize else value), job.num
    keys = rendered(jobs, ("rank", plan.metric, plan.maximize), key)
    return [job for _, job in sorted(zip(keys, jobs), key=operator.itemgetter(0))]


def best_job(jobs: list[Job], plan: Plan) -> Job | None:
    top = ranked(jobs, plan)[:1]
    return top[0] if top and top[0].status == "completed" and plan.metric in top[0].metrics else None


def csv_line(cells: list) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


def rendered(jobs: list[Job], key: tuple, render) -> list:
    """`render(job)` of each job, kept on the job under `key`: a finished job's row (rank, group)
    is made once. A loop here, not a call per job: it runs over every job after every job."""
    out = []
    for job in jobs:
        made = job.rows.get(key)
        if made is None:
            made = job.rows[key] = render(job)
        out.append(made)
    return out


def summary_csv(jobs: list[Job], plan: Plan, metrics: list[str] | None = None) -> str:
    """One row per job: number, swept keys, status, every final metric (`metrics`: the columns,
    metric_columns), wall time, error."""
    keys, metrics = swept_keys(jobs, plan), metrics or metric_columns(jobs, plan.metric)
    def row(j: Job) -> str:
        return csv_line([j.num, *(j.overrides.get(k, "") for k in keys), j.status,
                         *(j.metrics.get(m, "") for m in metrics),
                         "" if j.wall_seconds is None else j.wall_seconds, j.error])
    return csv_line(["job", *keys, "status", *metrics, "wall_seconds", "error"]) + "".join(
        rendered(jobs, ("csv", *keys, *metrics), row))


def shown(value: str) -> str:
    """An override value as tables and titles show it: floats with 3 significant digits
    (Optuna suggests optimizer.lr=0.07231563192959946), anything else as given."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return value
    return f"{x:.3g}" if any(c in value for c in ".eE") else value


def _cell(value) -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def counts(jobs: list[Job]) -> str:
    """'4 jobs: 3 completed, 1 diverged'."""
    tally = collections.Counter(map(operator.attrgetter("status"), jobs))  # in order of first appearance
    return f"{len(jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in tally.items())


def summary_md(sweep_dir: Path, jobs: list[Job], plan: Plan, metrics: list[str] | None = None,
               known: dict | None = None) -> str:
    """The summary.csv table sorted by the optimized metric, the best row marked with ★, after
    the table over seeds (`known`: see seed_groups)."""
    keys, metrics = swept_keys(jobs, plan), metrics or metric_columns(jobs, plan.metric)
    order = ranked(jobs, plan)
    best = best_job(order[:1], plan)
    header = ["", "job", *keys, *metrics, "status", "wall s", "error"]
    lines = [f"# Sweep {sweep_dir.name}", "",
             f"{counts(jobs)}. Sorted by `{plan.metric}` ({'higher' if plan.maximize else 'lower'} "
             f"is better); ★ marks the best. Rebuilt by `hydrafit-sweep-report {sweep_dir}`.", "",
             *seed_table(jobs, plan, metrics, known), "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    def row(j: Job) -> str:  # all but the ★ cell
        cells = [j.num, *(shown(j.overrides.get(k, "")) for k in keys),
                 *(j.metrics.get(m, "") for m in metrics), j.status,
                 "" if j.wall_seconds is None else f"{j.wall_seconds:.1f}", j.error]
        return " | ".join(_cell(v) for v in cells) + " |"
    lines += [("| ★ | " if j is best else "|  | ") + r for j, r in zip(order, rendered(order, ("md", *keys, *metrics), row))]
    from hydrafit.study import PICTURES  # an Optuna search's pictures, when it has ended

    pictures = [f"![{name[:-4].replace('_', ' ')}]({name})" for name in PICTURES if (sweep_dir / name).is_file()]
    return "\n".join([*lines, "", "![truth, data and prediction of each job](sweep.png)", *pictures, ""])


class SeedGroup:
    """The jobs of a sweep that differ only in `seed` (the other swept keys' `values`), with each
    metric's finite final values over its completed jobs, by job number. Kept up to date job by
    job (add), so that statistics over 1,000 seeds, after every job of a seed sweep, need no walk
    over them in Python (benchmarks/sweep_overhead.py)."""

    def __init__(self, values: dict[str, str]):
        self.values = values
        self.by_num: dict[int, Job] = {}
        self.finite: dict[str, dict[int, float]] = {}
        self.n_completed = 0
        self._stats: dict = {}

    def add(self, job: Job) -> None:
        """Take `job` in, in place of the group's earlier reading of it."""
        old = self.by_num.get(job.num)
        if old is job:
            return
        if old is not None:
            self.n_completed -= old.status == "completed"
            for values in self.finite.values():
                values.pop(job.num, None)
        self.by_num[job.num] = job
        if job.status == "completed":
            self.n_completed += 1
            for metric, value in job.finite.items():
                self.finite.setdefault(metric, {})[job.num] = value
        self._stats.clear()

    @property
    def jobs(self) -> list[Job]:
        return list(self.by_num.values())

    @property
    def completed(self) -> list[Job]:
        return [j for j in self.by_num.values() if j.status == "completed"]

    def stats(self, metric: str) -> tuple[float, float, int] | None:
        """(mean, sample standard deviation (n - 1; nan for one seed), n) of `metric` over the
        completed seeds that report it finitely; None if none does."""
        if metric not in self._stats:
            self._stats[metric] = mean_std(self.finite.get(metric, {}).values())
        return self._stats[metric]


def mean_std(values) -> tuple[float, float, int] | None:
    """(mean, sample standard deviation, n) of `values` (floats), summed exactly (fsum) and in C."""
    import numpy as np

    n = len(values)
    if not n:
        return None
    mean = math.fsum(values) / n
    deviations = np.fromiter(values, float, n) - mean
    return mean, (math.sqrt(math.fsum(deviations * deviations) / (n - 1)) if n > 1 else math.nan), n


# Seed groups of running sweeps, by sweep dir and other swept keys (write_summary with reuse).
_known_groups: dict[tuple, dict[tuple, SeedGroup]] = {}


def seed_groups(jobs: list[Job], keys: list[str], metric: str, maximize: bool = False,
                known: dict | None = None) -> list[SeedGroup]:
    """When `seed` is among the swept `keys`: the jobs grouped by the other swept keys, best
    group first by the mean of `metric` (groups without a completed seed last, in sweep order);
    else []. `known`: groups of these jobs as read before, updated in place."""
    if "seed" not in keys:
        return []
    others = tuple(k for k in keys if k != "seed")
    groups = {} if known is None else known
    for job, values in zip(jobs, rendered(jobs, ("group", *others), lambda j: tuple([j.overrides.get(k, "") for k in others]))):
        group = groups.get(values)
        if group is None:
            group = groups[values] = SeedGroup(dict(zip(others, values)))
        group.add(job)

    def score(group: SeedGroup) -> float:
        stats = group.stats(metric)
        return math.inf if stats is None else -stats[0] if maximize else stats[0]
    return sorted(groups.values(), key=score)


def seed_table(jobs: list[Job], plan: Plan, metrics: list[str] | None = None, known: dict | None = None) -> list[str]:
    """summary.md's table over seeds (when `seed` is swept): one row per combination of the
    other swept keys, each metric's mean ± standard deviation over its completed seeds, the
    best group by the optimized metric's mean marked ★. `known`: see seed_groups."""
    keys, metrics = swept_keys(jobs, plan), metrics or metric_columns(jobs, plan.metric)
    groups = seed_groups(jobs, keys, plan.metric, plan.maximize, known)
    if not groups:
        return []
    others = [k for k in keys if k != "seed"]
    best = groups[0] if groups[0].stats(plan.metric) else None
    header = ["", *others, "seeds", *(f"{m} (mean ± std)" for m in metrics)]
    lines = ["## Over seeds", "",
             f"Each metric's mean ± sample standard deviation over the completed seeds of each "
             f"combination of the other swept keys; `seeds`: completed of all; (n=k) where fewer "
             f"report the metric. ★ marks the best mean of `{plan.metric}`.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in groups:
        cells = []
        for metric in metrics:
            stats = group.stats(metric)
            n_note = "" if stats is None or stats[2] == group.n_completed else f" (n={stats[2]})"
            spread = "" if stats is None or stats[2] < 2 else f" ± {stats[1]:.2g}"
            cells.append("" if stats is None else f"{stats[0]:.4g}{spread}{n_note}")
        row = ["★" if group is best else "", *(shown(v) for v in group.values.values()),
               f"{group.n_completed}/{len(group.by_num)}", *cells]
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return [*lines, "", "## Jobs", ""]


def write_atomic(path: Path, data: str | bytes) -> None:
    """Temp file + rename (named per process: joblib workers write concurrently)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
    os.replace(tmp, path)


def write_summary(sweep_dir: Path, figure: bool = True, reuse: bool = False) -> list[Job]:
    """Write summary.csv, summary.md (and sweep.png) into `sweep_dir`; return its jobs.
    Nothing is written while no job has started. `reuse`: see collect."""
    plan = read_plan(sweep_dir)
    jobs = collect(sweep_dir, plan, reuse)
    if all(j.status == "missing" for j in jobs):
        return jobs
    metrics = metric_columns(jobs, plan.metric)
    known = _known_groups.setdefault((sweep_dir, tuple(swept_keys(jobs, plan))), {}) if reuse else None
    write_atomic(sweep_dir / "summary.csv", summary_csv(jobs, plan, metrics))
    write_atomic(sweep_dir / "summary.md", summary_md(sweep_dir, jobs, plan, metrics, known))
    if figure:
        from hydrafit.plotting import png
        from hydrafit.sweep_figure import sweep_figure

        best = best_job(jobs, plan)
        write_atomic(sweep_dir / "sweep.png", png(sweep_figure(jobs, swept_keys(jobs, plan), plan.metric, best and best.num,
                                                           title=f"{sweep_dir.name}: {counts(jobs)}", maximize=plan.maximize)))
    return jobs


def label(job: Job, keys: list[str]) -> str:
    """'#3 optimizer.lr=10': the job number and its swept overrides."""
    return " ".join([f"#{job.num}", *(f"{k}={job.overrides[k]}" for k in keys if k in job.overrides)])


def announce(sweep_dir: Path, jobs: list[Job], plan: Plan, program: str) -> bool:
    """Say where the summary is and which job is best (stdout), and every job that did not
    complete (stderr). True if every job completed (or was pruned)."""
    best, keys = best_job(jobs, plan), swept_keys(jobs, plan)
    print(f"{program}: sweep summary in {sweep_dir}/summary.md (also summary.csv, sweep.png): "
          f"{counts(jobs)}" + (f"; best {plan.metric} = {best.metrics[plan.metric]:.6g}: "
                               f"{label(best, keys)}" if best else ""), flush=True)
    unfinished = [j for j in jobs if j.status not in FINISHED]
    if unfinished:
        print(f"{program}: {len(unfinished)} of {len(jobs)} jobs did not complete:", file=sys.stderr)
        for job in unfinished:
            print(f"  {label(job, keys)}: {job.status}" + (f": {job.error}" if job.error else ""),
                  file=sys.stderr)
        if plan.resumable:
            again = "continue the search" if plan.trials is not None else "run only those again"
            print(f"{program}: {again} with: hydrafit-train -m resume_sweep={sweep_dir}", file=sys.stderr)
    return not unfinished


def finish(sweep_dir: Path, program: str = "hydrafit-train") -> list[Job]:
    """End of a sweep: write the whole summary and announce it; return the jobs."""
    if not sweep_dir.is_dir() or not job_dirs(sweep_dir):
        return []  # nothing ran (e.g. the sweep was refused before its first job)
    jobs = write_summary(sweep_dir)
    announce(sweep_dir, jobs, read_plan(sweep_dir), program)
    return jobs


def report(argv: list[str] | None = None) -> int:
    """hydrafit-sweep-report <sweep dir>: rebuild summary.csv, summary.md and sweep.png from the
    job directories (of a finished, running or killed sweep) and print the table. Exit status
    0 if every job completed (or was pruned), 1 if not, 2 if the directory is not a sweep. For
    an Optuna search it lists every trial of the study, also other workers' (hydra.sweeper.join)."""
    parser = argparse.ArgumentParser(prog="hydrafit-sweep-report", description=report.__doc__)
    parser.add_argument("sweep_dir", type=Path, help="e.g. outputs/multiruns/2026-11-24_10-00-00")
    sweep_dir = parser.parse_args(argv).sweep_dir
    if not sweep_dir.is_dir() or not (job_dirs(sweep_dir) or (sweep_dir / "multirun.yaml").is_file()):
        print(f"hydrafit-sweep-report: error: '{sweep_dir}' is not a sweep directory "
              f"(no multirun.yaml, no job directories)", file=sys.stderr)
        return 2
    if not job_dirs(sweep_dir):
        print(f"hydrafit-sweep-report: no job of {sweep_dir} has started yet")
        return 1
    jobs = write_summary(sweep_dir)
    print((sweep_dir / "summary.md").read_text())
    return 0 if announce(sweep_dir, jobs, read_plan(sweep_dir), "hydrafit-sweep-report") else 1


def check_resume(config: DictConfig) -> None:
    """Refuse, in one line, a resume_sweep= that cannot continue the sweep it names."""
    from hydrafit.preflight import fail

    resume = config.get("resume_sweep")
    if resume is None:
        return
    sweep_dir = Path(str(resume))
    if not (sweep_dir / "multirun.yaml").is_file():
        fail(f"resume_sweep: '{resume}' is not a sweep directory (no multirun.yaml)")
    plan = read_plan(sweep_dir)
    if not plan.resumable:
        fail(f"resume_sweep: '{resume}' was not swept by hydrafit's sweepers (resumable, optuna)")
    if not str(config.hydra.sweeper._target_).endswith(".ResumableSweeper"):
        fail("resume_sweep: a sweep resumes with the sweeper it recorded; drop hparams_search= "
             "and hydra/sweeper=")
    if plan.trials is None and config.hydra.sweeper.get("n_trials") is not None:
        fail("hydra.sweeper.n_trials: only an Optuna search (hparams_search=optuna) has trials; "
             "a resumed grid runs its own jobs")
    if Path(str(config.hydra.sweep.dir)).resolve() != sweep_dir.resolve():
        fail(f"resume_sweep: resumes into '{resume}'; drop hydra.sweep.dir={config.hydra.sweep.dir}")
    original = [str(o) for o in OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task]
    given = [str(o) for o in config.hydra.overrides.task if not str(o).startswith("resume_sweep=")]
    if given and sorted(given) != sorted(original):
        fail(f"resume_sweep: a resumed sweep runs its own overrides ({' '.join(original) or 'none'}); "
             f"give none or exactly those, got {' '.join(given)}")


def write_tensorboard_experiment(sweep_dir: Path, config: DictConfig) -> None:
    """TensorBoard's HPARAMS table of the sweep opens on the swept keys and optimized_metric
    (hydrafit.hparams says how); skipped where the sweep dir cannot be written."""
    from hydrafit.hparams import write_sweep_experiment

    try:
        write_sweep_experiment(sweep_dir, config, read_plan(sweep_dir).swept or [])
    except OSError as error:
        log.debug("no sweep-level HPARAMS summary in %s: %s", sweep_dir, error)


# Jobs that end within this many seconds of the tables' last rewrite (in the same process) leave
# it to the next one: a vectorised population's members end ~40 a second, and each rewrite lists
# every job (~8 ms a job at 480 jobs, 3.8 s of such a sweep, on this project's CPU). A job of
# the basic launcher takes seconds, so each still rewrites them.
REWRITE_SECONDS = 1.0


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
            from hydrafit.preflight import fail

            fail("resume_sweep: continues a sweep; run it with -m (--multirun)")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        check_resume(config)
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
        from hydrafit.callbacks import GracefulStop  # a signal that came as the job's last epoch ended

        if (status == "interrupted" or GracefulStop.requested) and os.getpid() == self.launcher_pid:
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
