"""Sweep summaries: what `hydrafit-train -m ...` leaves in its sweep dir, and `hydrafit-sweep-report`.

    hydrafit-train -m optimizer.lr=0.003,0.01,0.03 model.hidden_dims=[8],[16],[32]
    hydrafit-sweep-report outputs/multiruns/<date>_<time>          # rebuild at any time, even mid-sweep
    hydrafit-train -m resume_sweep=outputs/multiruns/<date>_<time>  # run only the jobs not completed

The summary (summary.csv, summary.md, sweep.png) is rebuilt from the files each job leaves
(.hydra/overrides.yaml, metrics.json, fit.png), never from memory: with hydra/launcher=joblib jobs
run in other processes, and Hydra 1.3 skips on_multirun_end once a job failed. SweepSummary
(a Hydra callback, conf/hydra/default.yaml) rewrites the tables after every job and everything
when the sweep ends; an atexit hook covers the end Hydra skips.
"""
from __future__ import annotations

import argparse
import atexit
import csv
import io
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

GRID_SWEEPERS = ("BasicSweeper", "ResumableSweeper")  # sweepers whose job list is known up front
IGNORED_KEYS = ("resume_sweep", "hparams_search")     # overrides that say how, not what, a job ran
NOT_METRICS = ("status", "error")


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
    """Make hydra/sweeper=resumable and hydra/launcher=vectorized known to Hydra. Its plugin scan
    finds them in a regular install; in an editable one setuptools' import hook hides
    src/hydra_plugins from pkgutil, so hydrafit.train calls this (Hydra's documented manual
    registration) before Hydra composes."""
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()  # the scan first: it re-executes modules it finds already imported
    from hydra_plugins.hydrafit_sweeper.resumable_sweeper import ResumableSweeper  # stores its config
    from hydra_plugins.hydrafit_sweeper.vectorized_launcher import VectorizedLauncher

    plugins.register(ResumableSweeper)
    plugins.register(VectorizedLauncher)


@dataclass
class Job:
    """One job of a sweep, as its directory tells it."""

    num: int
    overrides: dict[str, str]
    status: str = "missing"  # completed|failed|diverged|interrupted|running|incomplete|missing
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    wall_seconds: float | None = None
    fit_png: Path | None = None


@dataclass
class Plan:
    """What the sweep set out to do, from <sweep dir>/multirun.yaml (empty if there is none)."""

    metric: str = "truth/rmse"
    maximize: bool = False
    n_jobs: int | None = None                      # None: unknown
    overrides: dict[int, list[str]] = field(default_factory=dict)  # known up front for grids
    resumable: bool = False
    swept: list[str] | None = None                 # keys given as sweeps (a,b / interval(...))


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
    (e.g. glob(), which needs Hydra's config loader): then the job directories tell."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return Plan()
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
        log.debug("cannot parse the sweep of %s: %s", sweep_dir, error)
    if sweeper.get("n_trials") is not None:
        plan.n_jobs = int(sweeper.n_trials)
    return plan


def job_dirs(sweep_dir: Path) -> dict[int, Path]:
    """Job number -> directory, for the job directories Hydra created (hydra.sweep.subdir is the
    job number, conf/hydra/default.yaml)."""
    return {int(p.name): p for p in sweep_dir.iterdir() if p.name.isdigit() and p.is_dir()}


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


def read_job(num: int, job_dir: Path | None, planned: list[str] | None = None) -> Job:
    """A Job from its directory (None: never created). Wall time runs from Hydra's job record
    (.hydra/hydra.yaml, written as the job starts) to the last metrics.json write."""
    job = Job(num, parse_overrides(planned or []))
    if job_dir is None:
        return job
    record = job_dir / ".hydra" / "overrides.yaml"
    if record.is_file():
        job.overrides = parse_overrides(OmegaConf.load(record))
    job.status, job.metrics, job.error = read_metrics(job_dir / "metrics.json")
    start, end = job_dir / ".hydra" / "hydra.yaml", job_dir / "metrics.json"
    if job.status not in ("running", "incomplete") and start.is_file() and end.is_file():
        job.wall_seconds = round(end.stat().st_mtime - start.stat().st_mtime, 3)
    if (job_dir / "fit.png").is_file():
        job.fit_png = job_dir / "fit.png"
    return job


def collect(sweep_dir: Path, plan: Plan | None = None) -> list[Job]:
    """Every job of the sweep, by number: the ones with a directory, and the planned ones without."""
    plan = plan or read_plan(sweep_dir)
    dirs = job_dirs(sweep_dir)
    numbers = sorted(set(dirs) | set(range(plan.n_jobs or 0)))
    return [read_job(n, dirs.get(n), plan.overrides.get(n)) for n in numbers]


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
    names = list(dict.fromkeys(k for j in jobs for k in j.metrics))
    return [metric] + [n for n in names if n != metric]


def ranked(jobs: list[Job], plan: Plan) -> list[Job]:
    """Completed jobs best first by the optimized metric, then the others by job number."""
    def score(job: Job) -> float:
        value = job.metrics.get(plan.metric)
        if job.status != "completed" or value is None or math.isnan(value):
            return math.inf
        return -value if plan.maximize else value
    return sorted(jobs, key=lambda j: (score(j), j.num))


def best_job(jobs: list[Job], plan: Plan) -> Job | None:
    top = ranked(jobs, plan)[:1]
    return top[0] if top and top[0].status == "completed" and plan.metric in top[0].metrics else None


def summary_csv(jobs: list[Job], plan: Plan) -> str:
    """One row per job: number, swept keys, status, every final metric, wall time, error."""
    keys, metrics = swept_keys(jobs, plan), metric_columns(jobs, plan.metric)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["job", *keys, "status", *metrics, "wall_seconds", "error"])
    for j in jobs:
        writer.writerow([j.num, *(j.overrides.get(k, "") for k in keys), j.status,
                         *(j.metrics.get(m, "") for m in metrics),
                         "" if j.wall_seconds is None else j.wall_seconds, j.error])
    return out.getvalue()


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
    tally = {s: sum(j.status == s for j in jobs) for s in dict.fromkeys(j.status for j in jobs)}
    return f"{len(jobs)} jobs: " + ", ".join(f"{n} {s}" for s, n in tally.items())


def summary_md(sweep_dir: Path, jobs: list[Job], plan: Plan) -> str:
    """The summary.csv table sorted by the optimized metric, the best row marked with ★."""
    keys, metrics = swept_keys(jobs, plan), metric_columns(jobs, plan.metric)
    best = best_job(jobs, plan)
    header = ["", "job", *keys, *metrics, "status", "wall s", "error"]
    lines = [f"# Sweep {sweep_dir.name}", "",
             f"{counts(jobs)}. Sorted by `{plan.metric}` ({'higher' if plan.maximize else 'lower'} "
             f"is better); ★ marks the best. Rebuilt by `hydrafit-sweep-report {sweep_dir}`.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for j in ranked(jobs, plan):
        row = ["★" if j is best else "", j.num, *(shown(j.overrides.get(k, "")) for k in keys),
               *(j.metrics.get(m, "") for m in metrics), j.status,
               "" if j.wall_seconds is None else f"{j.wall_seconds:.1f}", j.error]
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join([*lines, "", "![truth, data and prediction of each job](sweep.png)", ""])


def write_atomic(path: Path, data: str | bytes) -> None:
    """Temp file + rename (named per process: joblib workers write concurrently)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
    os.replace(tmp, path)


def write_summary(sweep_dir: Path, figure: bool = True) -> list[Job]:
    """Write summary.csv, summary.md (and sweep.png) into `sweep_dir`; return its jobs.
    Nothing is written while no job directory exists."""
    plan = read_plan(sweep_dir)
    jobs = collect(sweep_dir, plan)
    if not job_dirs(sweep_dir):
        return jobs
    write_atomic(sweep_dir / "summary.csv", summary_csv(jobs, plan))
    write_atomic(sweep_dir / "summary.md", summary_md(sweep_dir, jobs, plan))
    if figure:
        from hydrafit.sweep_figure import sweep_figure

        best = best_job(jobs, plan)
        png = io.BytesIO()
        sweep_figure(jobs, swept_keys(jobs, plan), plan.metric, best and best.num,
                     title=f"{sweep_dir.name}: {counts(jobs)}").savefig(png, format="png")
        write_atomic(sweep_dir / "sweep.png", png.getvalue())
    return jobs


def label(job: Job, keys: list[str]) -> str:
    """'#3 optimizer.lr=10': the job number and its swept overrides."""
    return " ".join([f"#{job.num}", *(f"{k}={job.overrides[k]}" for k in keys if k in job.overrides)])


def announce(sweep_dir: Path, jobs: list[Job], plan: Plan, program: str) -> bool:
    """Say where the summary is and which job is best (stdout), and every job that did not
    complete (stderr). True if every job completed."""
    best, keys = best_job(jobs, plan), swept_keys(jobs, plan)
    print(f"{program}: sweep summary in {sweep_dir}/summary.md (also summary.csv, sweep.png): "
          f"{counts(jobs)}" + (f"; best {plan.metric} = {best.metrics[plan.metric]:.6g}: "
                               f"{label(best, keys)}" if best else ""), flush=True)
    unfinished = [j for j in jobs if j.status != "completed"]
    if unfinished:
        print(f"{program}: {len(unfinished)} of {len(jobs)} jobs did not complete:", file=sys.stderr)
        for job in unfinished:
            print(f"  {label(job, keys)}: {job.status}" + (f": {job.error}" if job.error else ""),
                  file=sys.stderr)
        if plan.resumable:
            print(f"{program}: run only those again with: hydrafit-train -m resume_sweep={sweep_dir}",
                  file=sys.stderr)
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
    0 if every job completed, 1 if not, 2 if the directory is not a sweep."""
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
    if not read_plan(sweep_dir).resumable or not str(config.hydra.sweeper._target_).endswith(
            ".ResumableSweeper"):
        fail("resume_sweep: only grid sweeps of the default sweeper resume; an Optuna study "
             "(in-memory storage) cannot continue")
    if Path(str(config.hydra.sweep.dir)).resolve() != sweep_dir.resolve():
        fail(f"resume_sweep: resumes into '{resume}'; drop hydra.sweep.dir={config.hydra.sweep.dir}")
    original = [str(o) for o in OmegaConf.load(sweep_dir / "multirun.yaml").hydra.overrides.task]
    given = [str(o) for o in config.hydra.overrides.task if not str(o).startswith("resume_sweep=")]
    if given and sorted(given) != sorted(original):
        fail(f"resume_sweep: a resumed sweep runs its own overrides ({' '.join(original) or 'none'}); "
             f"give none or exactly those, got {' '.join(given)}")


class SweepSummary(Callback):
    """Keeps <sweep dir>/summary.csv and summary.md current after every job (in the job's own
    process, so also under joblib) and writes them with sweep.png when the sweep ends. Hydra
    1.3 calls on_multirun_end only if no job failed: an atexit hook, registered when the sweep
    starts, writes the summary on the failure path (Hydra then exits 1). Where Hydra would exit
    0 although a job did not complete (Optuna, max_failure_rate), on_multirun_end exits 1.
    A job stopped by Ctrl-C/SIGTERM stops the sweep (exit 130), resumable with resume_sweep=."""

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.launcher_pid: int | None = None  # jobs of hydra/launcher=joblib run in other processes

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
        atexit.register(self._at_exit)

    def on_job_end(self, config: DictConfig, job_return, **kwargs) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        status, _, error = read_metrics(Path(config.hydra.runtime.output_dir) / "metrics.json")
        if job_return.status == JobStatus.FAILED or status not in ("completed", "incomplete"):
            log.error("Job #%s %s%s", config.hydra.job.num, status.replace("incomplete", "failed"),
                      f": {error}" if error else "")
        write_summary(Path(str(config.hydra.sweep.dir)), figure=False)
        if status == "interrupted" and os.getpid() == self.launcher_pid:
            # Ctrl-C or SIGTERM stopped this job gracefully (GracefulStop): stop the sweep too,
            # rather than start the next job. The atexit hook writes the summary.
            log.error("Sweep stopped; continue it with: hydrafit-train -m resume_sweep=%s", self.sweep_dir)
            sys.exit(130)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        atexit.unregister(self._at_exit)
        jobs = finish(self.sweep_dir)
        # A job whose metrics.json records a failure; not one without metrics.json (callbacks=none).
        if any(j.status not in ("completed", "incomplete") for j in jobs):
            sys.exit(1)

    def _at_exit(self) -> None:
        finish(self.sweep_dir)
