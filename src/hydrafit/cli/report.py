"""hydrafit-sweep-report <sweep dir>: rebuild a sweep's summary from its job directories and print it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydrafit.sweeps.records import job_dirs, read_plan
from hydrafit.sweeps.summary import announce, write_summary


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
