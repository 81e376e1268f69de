"""Row 9: population-based training (hparams_search=pbt) against a vectorised grid over the same
learning-rate range, as a user runs them (whole `hydrafit-train -m` processes): wall time, and
the best, median and worst final truth/rmse of the members of each, for each seed of the whole
procedure. PBT's members start from lrs drawn log-uniformly in [1e-4, 1] and every 25 epochs the
worst quarter copies the best quarter and perturbs its lr; the grid's are log-spaced over the
same range and keep theirs.
"""
from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.processes import HYDRAFIT, timed

TARGETS = {  # name -> the overrides of its problem
    "polynomial": [],
    "expression": ["dataset=expression", "dataset.expr=sin(4*x) + 0.5*x", "model.hidden_dims=[32,32]"],
}


def rmses(sweep: Path) -> list[float]:
    return [json.loads((job / "metrics.json").read_text())["truth/rmse"]
            for job in sweep.iterdir() if job.name.isdigit()]


def procedure(args: list[str], members: int, seed: int, target: list[str], common: list[str]) -> dict:
    """{seconds, rmse: (best, median, worst)} of one `hydrafit-train -m <args>` of `members` jobs."""
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep"
        seconds = timed([HYDRAFIT, "-m", *args, *target, f"seed={seed}", *common, "~callbacks.progress_bar",
                         f"hydra.sweep.dir={sweep}"], Path(tmp))
        values = rmses(sweep)
    assert len(values) == members, f"{len(values)} of {members} jobs left metrics"
    return {"seconds": seconds, "rmse": (min(values), statistics.median(values), max(values))}


def compare(target: str, members: int, seeds: list[int], epochs: int, interval: int) -> dict:
    """PBT and the grid on `target`, for each seed: {"pbt": [...], "grid": [...]}."""
    lrs = ",".join(repr(float(lr)) for lr in np.logspace(-4, 0, members))
    common = [f"trainer.max_epochs={epochs}"]
    pbt = ["hparams_search=pbt", f"hydra.sweeper.population={members}", f"hydra.sweeper.perturbation_interval={interval}"]
    grid = ["hydra/launcher=vectorized", f"optimizer.lr={lrs}"]
    out: dict = {"pbt": [], "grid": []}
    for seed in seeds:  # alternated, so that a slower minute of the machine falls on both
        out["grid"].append(procedure(grid, members, seed, TARGETS[target], common))
        out["pbt"].append(procedure(pbt, members, seed, TARGETS[target], common))
    return out
