"""The work a sweep does between two jobs (summary.csv and summary.md kept current), after job 10
and after job N of an N-job grid: it must not grow with the jobs already done.

A real one-job sweep is run once for a template (its multirun.yaml and job directory); the
grid of N jobs is that sweep's record with `seed=range(0,N)`, and job k's directory a copy of
the template's with its own overrides. Then, job after job, the directory appears and the
bookkeeping SweepSummary runs after it (hydrafit.sweeps.summary.update_after_job) is timed. The baseline
is the same sweep rebuilt from every job directory (what SweepSummary did before), timed at the
same points.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from hydrafit.sweeps import summary as sweep

HYDRAFIT = str(Path(sys.executable).parent / "hydrafit-train")


def template(tmp: Path) -> Path:
    """A finished one-job sweep of the default experiment, one epoch."""
    subprocess.run([HYDRAFIT, "-m", "seed=0", "trainer.max_epochs=1", "callbacks.fit_plot.n_images=0",
                    f"hydra.sweep.dir={tmp / 'template'}"], cwd=tmp, check=True, capture_output=True)
    return tmp / "template"


def fastest(call, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def overhead_ms(source: Path, n_jobs: int, at: list[int], tmp: Path) -> dict[int, tuple[float, float]]:
    """{job k: (ms rebuilding from every directory, ms of update_after_job)} after job k."""
    sweep_dir = tmp / f"sweep{n_jobs}"
    sweep_dir.mkdir()
    record = OmegaConf.load(source / "multirun.yaml")
    record.hydra.overrides.task = [f"seed=range(0,{n_jobs})"]
    OmegaConf.save(record, sweep_dir / "multirun.yaml")
    results = {}
    for k in range(1, n_jobs + 1):
        job = sweep_dir / str(k - 1)
        shutil.copytree(source / "0", job)
        (job / ".hydra" / "overrides.yaml").write_text(f"- seed={k - 1}\n")
        if k in at:
            rebuilt = fastest(lambda: sweep.write_summary(sweep_dir, figure=False), repeats=3)
            incremental = fastest(lambda: sweep.update_after_job(sweep_dir, k - 1), repeats=100)
            results[k] = (rebuilt * 1e3, incremental * 1e3)
        else:
            sweep.update_after_job(sweep_dir, k - 1)
    return results


def measure(sizes: list[int]) -> dict[int, dict[int, tuple[float, float]]]:
    """{N: {k: (rebuilt ms, incremental ms)}} for k = 10 and k = N of each N-job sweep."""
    with tempfile.TemporaryDirectory() as tmp:
        source = template(Path(tmp))
        return {n: overhead_ms(source, n, sorted({min(10, n), n}), Path(tmp)) for n in sizes}
