"""summary.csv and summary.md of a sweep: one row per job, ranked by the optimized metric, and
when `seed` is swept a table of each metric's mean ± standard deviation over seeds.

A job's rendered rows and a seed group's statistics are kept between rewrites (rendered,
SeedGroup): a running sweep rewrites its tables after its jobs, and the work must not grow
with the jobs done (benchmarks/sweep_overhead.py).
"""
from __future__ import annotations

import collections
import csv
import io
import itertools
import math
import operator
import os
from pathlib import Path

from hydrafit.sweeps.records import Job, Plan
from hydrafit.sweeps.study import PICTURES


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
             *resume_note(sweep_dir, jobs), *seed_table(jobs, plan, metrics, known),
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    def row(j: Job) -> str:  # all but the ★ cell
        cells = [j.num, *(shown(j.overrides.get(k, "")) for k in keys),
                 *(j.metrics.get(m, "") for m in metrics), j.status,
                 "" if j.wall_seconds is None else f"{j.wall_seconds:.1f}", j.error]
        return " | ".join(_cell(v) for v in cells) + " |"
    lines += [("| ★ | " if j is best else "|  | ") + r for j, r in zip(order, rendered(order, ("md", *keys, *metrics), row))]
    # an Optuna search's pictures, when it has ended
    pictures = [f"![{name[:-4].replace('_', ' ')}]({name})" for name in PICTURES if (sweep_dir / name).is_file()]
    return "\n".join([*lines, "", "![truth, data and prediction of each job](sweep.png)", *pictures, ""])


def resume_note(sweep_dir: Path, jobs: list[Job]) -> list[str]:
    """summary.md's line on what resuming did: the jobs that continued from their last.ckpt and
    those that started again (their earlier attempts in previous_attempts/); none if neither."""
    try:  # one listing, only in a resumed sweep: <job number>_<time> (hydrafit.sweeps.resumable)
        again = {int(name.split("_", 1)[0]) for name in os.listdir(sweep_dir / "previous_attempts")}
    except (OSError, ValueError):
        again = set()
    continued = [f"#{j.num}" for j in jobs if j.continued]
    restarted = [f"#{j.num}" for j in jobs if j.num in again and not j.continued]
    parts = []
    if continued:
        parts.append(f"{' '.join(continued)} continued from {'its' if len(continued) == 1 else 'their'} last.ckpt")
    if restarted:
        parts.append(f"{' '.join(restarted)} started again (earlier attempts in previous_attempts/)")
    return [f"Resumed: {'; '.join(parts)}.", ""] if parts else []


def label(job: Job, keys: list[str]) -> str:
    """'#3 optimizer.lr=10': the job number and its swept overrides."""
    return " ".join([f"#{job.num}", *(f"{k}={job.overrides[k]}" for k in keys if k in job.overrides)])


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
    import numpy as np  # only once seeds are summarised (~0.1 s to import)

    n = len(values)
    if not n:
        return None
    mean = math.fsum(values) / n
    deviations = np.fromiter(values, float, n) - mean
    return mean, (math.sqrt(math.fsum(deviations * deviations) / (n - 1)) if n > 1 else math.nan), n


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
