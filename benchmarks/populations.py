"""Row 8: what a population vectorises besides seeds and optimizer values, as a user runs it
(whole `hydrafit-train -m` processes): a sweep of the user's own CSV file (standardised, with a
validation split), a width x activation x lr x seed grid, and a single CSV run's cost per epoch
against the default run's.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchmarks.processes import HYDRAFIT, timed, timed_with_memory

CSV = Path(__file__).resolve().parents[1] / "examples" / "data" / "temperature.csv"
OWN_DATA = ["dataset=csv", f"dataset.path={CSV}", "dataset.x=day", "dataset.y=temp_c"]


def sweep(args: list[str], launcher: str) -> tuple[float, float]:
    """(wall seconds, peak MB) of `hydrafit-train -m <args>` with hydra/launcher=<launcher>."""
    with tempfile.TemporaryDirectory() as tmp:
        return timed_with_memory([HYDRAFIT, "-m", f"hydra/launcher={launcher}", *args, "~callbacks.progress_bar",
                                  f"hydra.sweep.dir={tmp}/sweep"], Path(tmp))


def own_data(lrs: list[str], seeds: int, common: list[str]) -> dict:
    """The lr x seed grid on the CSV file, both launchers measured whole."""
    args = [*OWN_DATA, f"optimizer.lr={','.join(lrs)}", f"seed=range(1,{seeds + 1})", *common]
    return {"jobs": len(lrs) * seeds, "basic": sweep(args, "basic"), "vectorized": sweep(args, "vectorized")}


def shapes(lrs: list[str], widths: list[str], activations: list[str], seeds: int, common: list[str]) -> dict:
    """The lr x width x activation x seed grid vectorised whole; the basic launcher on its seed-1
    slice (every shape and lr once), extrapolated by the seeds: its cost per job depends on the
    shape, not on the seed."""
    grid = [f"optimizer.lr={','.join(lrs)}", f"model.hidden_dims={','.join(widths)}",
            f"model.activation={','.join(activations)}", *common]
    basic_s, basic_mb = sweep([*grid, "seed=1"], "basic")
    return {"jobs": len(lrs) * len(widths) * len(activations) * seeds, "basic_slice": (basic_s, basic_mb),
            "seeds": seeds, "vectorized": sweep([*grid, f"seed=range(1,{seeds + 1})"], "vectorized")}


def epoch_ms(args: list[str], repeats: int) -> float:
    """Fastest fit time per epoch (metrics.json's fit_seconds / epochs) of `hydrafit-train <args>`."""
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            run = Path(tmp) / f"run{i}"
            timed([HYDRAFIT, *args, "~callbacks.progress_bar", f"hydra.run.dir={run}"], Path(tmp))
            metrics = json.loads((run / "metrics.json").read_text())
            best = min(best, metrics["fit_seconds"] / metrics["epochs"] * 1000)
    return best


def single_csv(epochs: int, repeats: int) -> tuple[float, float]:
    """(default run's, CSV run's) fit ms per epoch, the runs alternated."""
    default, csv = [], []
    for _ in range(repeats):
        default.append(epoch_ms([f"trainer.max_epochs={epochs}"], 1))
        csv.append(epoch_ms([*OWN_DATA, f"trainer.max_epochs={epochs}"], 1))
    return min(default), min(csv)
