"""hydrafit-sweep-report <sweep dir>: rebuild a sweep's summary from its job directories and print it."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydrafit.rundir.files import WriteError
from hydrafit.sweeps.records import job_dirs
from hydrafit.sweeps.summary import publish, summarize

PROGRAM = "hydrafit-sweep-report"


def report(argv: list[str] | None = None) -> int:
    """hydrafit-sweep-report <sweep dir>: rebuild summary.csv, summary.md and sweep.png from the
    job directories (of a finished, running or killed sweep) and print the table. Exit status
    0 if every job completed (or was pruned), 1 if not or if a file cannot be written (the table
    is printed all the same), 2 if the directory is not a sweep. For
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
    summary = summarize(sweep_dir)
    print(summary.md)  # the table, whether or not its files can be written
    try:
        return 0 if publish(sweep_dir, summary, PROGRAM) else 1
    except WriteError:  # said in one line; the files it had stay as they were
        return 1
