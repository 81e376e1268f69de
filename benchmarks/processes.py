"""Benchmarks that time whole processes, from start to exit, as a user waits for them:
target 2 (a default run against the naive Lightning script), target 4 (a sweep in one `-m`
against one process per job) and the Hydra-only answers (`--help`, `--cfg job`).
"""
from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HYDRAFIT = str(BIN / "hydrafit-train")
NAIVE = str(Path(__file__).with_name("naive_lightning.py"))
HEAVY_MODULES = ("torch", "pytorch_lightning", "lightning_fabric", "lightning")


def timed(command: list[str], cwd: Path) -> float:
    """Wall seconds of `command` run in `cwd`; its output is kept only to explain a failure."""
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds


def whole_run(hydrafit_args: list[str], naive_epochs: int, repeats: int) -> tuple[float, float]:
    """Target 2: (naive Lightning script, hydrafit-train) wall seconds, fastest of `repeats`
    runs each, alternated so that a busy moment of the machine hits both alike."""
    naive, hydrafit = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            naive.append(timed([sys.executable, NAIVE, str(naive_epochs)], Path(tmp)))
            hydrafit.append(timed([HYDRAFIT, *hydrafit_args, f"hydra.run.dir={tmp}/run{i}"], Path(tmp)))
    return min(naive), min(hydrafit)


def timed_with_memory(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of `command`: the peak of its largest process (and of any
    process it waited for), read by a small wrapper process from getrusage(RUSAGE_CHILDREN)."""
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapper, *command], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0,):
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return seconds, int(proc.stdout.split()[-1]) / 1024


def vectorized_sweep(lrs: list[str], seeds: int, common: list[str], basic: bool) -> dict:
    """Row 6: an lr x seed grid of the default experiment with hydra/launcher=vectorized and,
    when `basic`, with Hydra's basic launcher: wall seconds and peak MB of each `hydrafit-train -m`."""
    grid = [f"optimizer.lr={','.join(lrs)}", f"seed=range(1,{seeds + 1})", "~callbacks.progress_bar", *common]
    result = {"jobs": len(lrs) * seeds}
    with tempfile.TemporaryDirectory() as tmp:
        result["vectorized"] = timed_with_memory(
            [HYDRAFIT, "-m", "hydra/launcher=vectorized", *grid, f"hydra.sweep.dir={tmp}/vec"], Path(tmp))
        if basic:
            result["basic"] = timed_with_memory([HYDRAFIT, "-m", *grid, f"hydra.sweep.dir={tmp}/basic"], Path(tmp))
    return result


def grid_jobs(grid: dict[str, list[str]]) -> list[list[str]]:
    """The overrides of every job of `grid` ({key: values}), as Hydra's basic sweeper orders them."""
    keys = list(grid)
    return [[f"{k}={v}" for k, v in zip(keys, values)] for values in itertools.product(*grid.values())]


def sweep(grid: dict[str, list[str]], common: list[str]) -> tuple[float, float]:
    """Target 4: (one process per job, one `hydrafit-train -m`) wall seconds for `grid`."""
    with tempfile.TemporaryDirectory() as tmp:
        separate = sum(timed([HYDRAFIT, *common, *job, f"hydra.run.dir={tmp}/job{i}"], Path(tmp))
                       for i, job in enumerate(grid_jobs(grid)))
        sweep_args = [f"{k}={','.join(v)}" for k, v in grid.items()]
        multirun = timed([HYDRAFIT, "-m", *common, *sweep_args, f"hydra.sweep.dir={tmp}/sweep"], Path(tmp))
    return separate, multirun


def imports_heavy(args: list[str]) -> bool:
    """Whether `hydrafit-train <args>` imports torch or Lightning (python -X importtime)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-X", "importtime", HYDRAFIT, *args], cwd=tmp,
                              capture_output=True, text=True)
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:")}
    return any(m.split(".")[0] in HEAVY_MODULES for m in modules)


def cli_answers(repeats: int) -> dict[str, float | bool]:
    """`--help` and `--cfg job`: fastest wall seconds of each, whether either imports torch or
    Lightning, and what importing them costs (`python -c "import torch, pytorch_lightning"`)."""
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        result = {name: min(timed([HYDRAFIT, *args], cwd) for _ in range(repeats))
                  for name, args in (("help", ["--help"]), ("cfg", ["--cfg", "job"]))}
        result["import"] = min(timed([sys.executable, "-c", "import torch, pytorch_lightning"], cwd)
                               for _ in range(repeats))
    result["heavy"] = imports_heavy(["--help"]) or imports_heavy(["--cfg", "job"])
    return result
