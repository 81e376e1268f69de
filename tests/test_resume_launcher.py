"""resume_sweep= launches with the launcher its sweep recorded (multirun.yaml's hydra.launcher)
unless the resuming command names one, and refuses a recorded launcher that is not installed.

Run: .venv/bin/python -m pytest tests/test_resume_launcher.py -q
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from conftest import read_metrics, run_cli
from test_sweeps import tree_stamps

SWEEP = ["-m", "hydra/launcher=vectorized", "seed=1,2,3,4", "trainer.max_epochs=5",
         "callbacks.fit_plot.n_images=0"]
VECTORIZED = "hydra_plugins.hydrafit_sweeper.vectorized_launcher.VectorizedLauncher"


@pytest.fixture(scope="module")
def vectorised(tmp_path_factory) -> Path:
    """A 4-job vectorised sweep, run once: each test resumes a copy of it."""
    cwd = tmp_path_factory.mktemp("vectorised")
    run_cli(*SWEEP, f"hydra.sweep.dir={cwd / 'sweep'}", cwd=cwd)
    return cwd / "sweep"


def killed(original: Path, tmp_path: Path) -> Path:
    """A copy of `original` as a kill during its population's fit leaves it: jobs 1 and 3 running (not consecutive: one population all the same)."""
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(original, sweep_dir)
    for n in (1, 3):
        (sweep_dir / str(n) / "metrics.json").write_text('{"status": "running"}')
    return sweep_dir


def launcher_of_job(job: Path) -> str:
    """The hydra/launcher choice a job's .hydra/ record names."""
    return yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]["hydra/launcher"]


def test_resume_without_a_launcher_trains_the_unfinished_jobs_as_one_population(vectorised, tmp_path):
    sweep_dir = killed(vectorised, tmp_path)
    proc = run_cli("-m", f"resume_sweep={sweep_dir}", cwd=tmp_path)
    assert f"Resuming {sweep_dir} with hydra/launcher=vectorized, the launcher the sweep ran with" in proc.stdout
    assert "vectorized: 2 jobs -> 1 population of 2" in proc.stdout
    assert "vectorized: training jobs #1 #3 as one population of 2" in proc.stdout
    assert [read_metrics(sweep_dir / str(n))["status"] for n in range(4)] == ["completed"] * 4
    for n in (1, 3):  # the same jobs: a member's numbers do not depend on its population
        assert read_metrics(sweep_dir / str(n))["truth/rmse"] == pytest.approx(
            read_metrics(vectorised / str(n))["truth/rmse"], rel=1e-5)
        assert launcher_of_job(sweep_dir / str(n)) == "vectorized"


def test_resume_naming_a_launcher_uses_it(vectorised, tmp_path):
    sweep_dir = killed(vectorised, tmp_path)
    proc = run_cli("-m", f"resume_sweep={sweep_dir}", "hydra/launcher=basic", cwd=tmp_path)
    assert f"Resuming {sweep_dir} with hydra/launcher=basic, named on the command line" in proc.stdout
    assert "Launching 1 jobs locally\n" in proc.stdout and "vectorized:" not in proc.stdout
    assert [read_metrics(sweep_dir / str(n))["status"] for n in range(4)] == ["completed"] * 4
    assert launcher_of_job(sweep_dir / "1") == "basic"


def test_resume_refuses_a_recorded_launcher_that_is_not_installed(vectorised, tmp_path):
    """A sweep started where a launcher's plugin was installed (here hydra-ray-launcher's, which
    is not), resumed where it is not: one line naming hydra/launcher, exit 2, nothing written."""
    sweep_dir = killed(vectorised, tmp_path)
    record = sweep_dir / "multirun.yaml"
    record.write_text(record.read_text()
                      .replace(VECTORIZED, "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher")
                      .replace("hydra/launcher=vectorized", "hydra/launcher=ray")
                      .replace("hydra/launcher: vectorized", "hydra/launcher: ray"))
    before = tree_stamps(sweep_dir)
    proc = run_cli("-m", f"resume_sweep={sweep_dir}", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("hydrafit-train: error: hydra/launcher: the sweep ran with hydra/launcher=ray, "
                                  "whose plugin hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher is not "
                                  "installed"), proc.stderr[-3000:]
    assert proc.stderr.strip().count("\n") == 0 and "hydra/launcher=basic" in proc.stderr
    assert tree_stamps(sweep_dir) == before and not (tmp_path / "outputs").exists()
