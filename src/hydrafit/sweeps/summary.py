"""What `hydrafit-train -m ...` leaves in its sweep dir, and how a sweep resumes.

    hydrafit-train -m optimizer.lr=0.003,0.01,0.03 model.hidden_dims=[8],[16],[32]
    hydrafit-sweep-report outputs/multiruns/<date>_<time>          # rebuild at any time, even mid-sweep
    hydrafit-train -m resume_sweep=outputs/multiruns/<date>_<time>  # run only the jobs not completed

The summary (summary.csv, summary.md, sweep.png) is rebuilt from the files each job leaves
(.hydra/overrides.yaml, metrics.json, fit.png). The Hydra callback SweepSummary
(hydrafit.cli.callbacks) rewrites the tables after every job (at most once a second) and
everything when the sweep ends.
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hydrafit.config.errors import ConfigError
from hydrafit.report.hparams import write_sweep_experiment
from hydrafit.rundir.files import FINISHED, WriteError, write_atomic
from hydrafit.sweeps.records import Job, Plan, collect, forget_job, job_dirs, read_plan
from hydrafit.sweeps.resumable import installed, launcher_choice, refuse_running, resume_launcher
from hydrafit.sweeps.tables import (best_job, counts, label, metric_columns, summary_csv,
                                    summary_md, swept_keys)

log = logging.getLogger(__name__)

# Seed groups of running sweeps, by sweep dir and other swept keys (write_summary with reuse).
_known_groups: dict[tuple, dict] = {}


# Jobs that end within this many seconds of the tables' last rewrite (in the same process) leave
# it to the next one: a vectorised population's members end ~40 a second, and each rewrite lists
# every job (~8 ms a job at 480 jobs, 3.8 s of such a sweep, on this project's CPU). A job of
# the basic launcher takes seconds, so each still rewrites them.
REWRITE_SECONDS = 1.0


def update_after_job(sweep_dir: Path, num: int, rewrite: bool = True) -> None:
    """The bookkeeping between two jobs: summary.csv and summary.md with job `num` read again
    and the other finished jobs as this process last read them (benchmarks/sweep_overhead.py).
    `rewrite` False: job `num` is only marked to be read again at the next rewrite."""
    forget_job(sweep_dir, num)
    if rewrite:
        write_summary(sweep_dir, figure=False, reuse=True)


@dataclass
class Summary:
    """A sweep as its job directories tell it: its jobs, its plan, and the text of summary.csv
    and summary.md (empty while no job has started: nothing is written then)."""

    jobs: list[Job]
    plan: Plan
    csv: str = ""
    md: str = ""


def summarize(sweep_dir: Path, reuse: bool = False) -> Summary:
    """The Summary of `sweep_dir`, written nowhere. `reuse`: see collect."""
    plan = read_plan(sweep_dir)
    jobs = collect(sweep_dir, plan, reuse)
    if all(j.status == "missing" for j in jobs):
        return Summary(jobs, plan)
    metrics = metric_columns(jobs, plan.metric)
    known = _known_groups.setdefault((sweep_dir, tuple(swept_keys(jobs, plan))), {}) if reuse else None
    return Summary(jobs, plan, summary_csv(jobs, plan, metrics), summary_md(sweep_dir, jobs, plan, metrics, known))


def write_summary(sweep_dir: Path, figure: bool = True, reuse: bool = False) -> list[Job]:
    """Write summary.csv, summary.md (and sweep.png) into `sweep_dir`; return its jobs.
    Nothing is written while no job has started. `reuse`: see collect."""
    summary = summarize(sweep_dir, reuse)
    write_files(sweep_dir, summary, figure)
    return summary.jobs


def write_files(sweep_dir: Path, summary: Summary, figure: bool = True) -> None:
    """summary.csv, summary.md (and sweep.png) of `summary` into `sweep_dir`, one by one: a file
    that cannot be written raises WriteError, and leaves it and the files after it as they were."""
    if not summary.md:
        return
    jobs, plan = summary.jobs, summary.plan
    write_atomic(sweep_dir / "summary.csv", summary.csv)
    write_atomic(sweep_dir / "summary.md", summary.md)
    if figure:
        # matplotlib (~0.4 s to import) when a figure is drawn: the Hydra callback that calls
        # this is built at every start, before a vectorised sweep forks its composers
        from hydrafit.plotting import png
        from hydrafit.sweeps.figure import sweep_figure

        best = best_job(jobs, plan)
        write_atomic(sweep_dir / "sweep.png", png(sweep_figure(jobs, swept_keys(jobs, plan), plan.metric, best and best.num,
                                                           title=f"{sweep_dir.name}: {counts(jobs)}", maximize=plan.maximize)))


def announce(sweep_dir: Path, jobs: list[Job], plan: Plan, program: str, saved: bool = True) -> bool:
    """Say where the summary is (`saved` False: that it could not be saved) and which job is best
    (stdout), and every job that did not complete (stderr). True if every job completed (or was
    pruned)."""
    best, keys = best_job(jobs, plan), swept_keys(jobs, plan)
    where = f"in {sweep_dir}/summary.md (also summary.csv, sweep.png)" if saved else f"of {sweep_dir} (not all saved)"
    print(f"{program}: sweep summary {where}: "
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
    """End of a sweep: write the whole summary and announce it (publish); return the jobs."""
    if not sweep_dir.is_dir() or not job_dirs(sweep_dir):
        return []  # nothing ran (e.g. the sweep was refused before its first job)
    summary = summarize(sweep_dir)
    publish(sweep_dir, summary, program)
    return summary.jobs


def publish(sweep_dir: Path, summary: Summary, program: str) -> bool:
    """Write the files of `summary` and announce it; True if every job completed (announce). A
    file that cannot be written (a full disk) is said in one line after the announcement, then
    raised (WriteError)."""
    try:
        write_files(sweep_dir, summary)
    except WriteError as error:
        announce(sweep_dir, summary.jobs, summary.plan, program, saved=False)
        print(f"{program}: error: {error}", file=sys.stderr)
        raise
    return announce(sweep_dir, summary.jobs, summary.plan, program)


def check_resume(config: DictConfig) -> None:
    """Raise ConfigError if resume_sweep= cannot continue the sweep it names."""
    resume = config.get("resume_sweep")
    if resume is None:
        return
    sweep_dir = Path(str(resume))
    if not (sweep_dir / "multirun.yaml").is_file():
        raise ConfigError(f"resume_sweep: '{resume}' is not a sweep directory (no multirun.yaml)")
    plan = read_plan(sweep_dir)
    if not plan.resumable:
        raise ConfigError(f"resume_sweep: '{resume}' was not swept by hydrafit's sweepers (resumable, optuna, pbt)")
    if not str(config.hydra.sweeper._target_).endswith(".ResumableSweeper"):
        raise ConfigError("resume_sweep: a sweep resumes with the sweeper it recorded; drop hparams_search= "
             "and hydra/sweeper=")
    if plan.trials is None and config.hydra.sweeper.get("n_trials") is not None:
        raise ConfigError("hydra.sweeper.n_trials: only an Optuna search (hparams_search=optuna) has trials; "
             "a resumed grid runs its own jobs")
    if Path(str(config.hydra.sweep.dir)).resolve() != sweep_dir.resolve():
        raise ConfigError(f"resume_sweep: resumes into '{resume}'; drop hydra.sweep.dir={config.hydra.sweep.dir}")
    recorded = OmegaConf.load(sweep_dir / "multirun.yaml")
    original = [str(o) for o in recorded.hydra.overrides.task]
    given = [str(o) for o in config.hydra.overrides.task if not str(o).startswith("resume_sweep=")]
    if given and sorted(given) != sorted(original):
        raise ConfigError(f"resume_sweep: a resumed sweep runs its own overrides ({' '.join(original) or 'none'}); "
             f"give none or exactly those, got {' '.join(given)}")
    check_launcher(config, recorded, resume)
    refuse_running(sweep_dir, plan)


def check_launcher(config: DictConfig, recorded: DictConfig, resume) -> None:
    """Raise ConfigError if the launcher the resume would use (resume_launcher) is not installed:
    a sweep started with hydra/launcher=joblib, resumed where the sweeps extra is missing."""
    launcher = resume_launcher(config, recorded)[0].hydra.launcher
    if not installed(launcher):
        raise ConfigError(f"hydra/launcher: the sweep ran with hydra/launcher={launcher_choice(recorded)}, whose "
                          f"plugin {launcher._target_} is not installed; install it (joblib's and submitit's come "
                          f"with hydrafit[sweeps]) or name a launcher: hydrafit-train -m resume_sweep={resume} "
                          f"hydra/launcher=basic")


def write_tensorboard_experiment(sweep_dir: Path, config: DictConfig) -> None:
    """TensorBoard's HPARAMS table of the sweep opens on the swept keys and optimized_metric
    (hydrafit.report.hparams says how); skipped where the sweep dir cannot be written."""
    try:
        write_sweep_experiment(sweep_dir, config, read_plan(sweep_dir).swept or [])
    except OSError as error:
        log.debug("no sweep-level HPARAMS summary in %s: %s", sweep_dir, error)
