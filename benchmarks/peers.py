"""Row 7: one lr x seed grid of the default experiment, written as a user of each peer writes
it and timed as a whole process (start to exit, imports included), all in the same run: a plain
PyTorch loop (benchmarks/peer_plain.py), Optuna's GridSampler in one process
(benchmarks/peer_optuna.py) and hydrafit's vectorised sweep (row 6's command, which writes
every job's run directory). The peers write no files: the comparison gives them that for free.
"""
from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

from benchmarks import processes

SCRIPTS = {"plain": Path(__file__).with_name("peer_plain.py"), "optuna": Path(__file__).with_name("peer_optuna.py")}


def available() -> list[str]:
    """The peers this venv can run: Optuna comes with the sweeps extra (make install has it)."""
    return [name for name in SCRIPTS if name != "optuna" or importlib.util.find_spec("optuna")]


def grid(lrs: list[str], seeds: int, epochs: int, repeats: int) -> dict[str, tuple[float, float]]:
    """{peer or "hydrafit": (wall seconds, peak MB)} for `lrs` x seeds 1..`seeds`, `epochs`
    full-batch epochs a fit: the fastest of `repeats` rounds, each round running every program
    once, so that a busy moment of the machine hits all of them alike."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in (*available(), "hydrafit")}
    with tempfile.TemporaryDirectory() as tmp:  # the cwd: nothing a peer might write lands in the repo
        for _ in range(repeats):
            for name in available():
                runs[name].append(processes.timed_with_memory(
                    [sys.executable, str(SCRIPTS[name]), str(epochs), ",".join(lrs), str(seeds)], Path(tmp)))
            # max_epochs is spelled out so that --quick can shorten every program alike
            runs["hydrafit"].append(processes.vectorized_sweep(
                lrs, seeds, [f"trainer.max_epochs={epochs}"], basic=False)["vectorized"])
    return {name: min(times) for name, times in runs.items()}
