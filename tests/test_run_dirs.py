"""Run and sweep directories are never shared, and an existing one is never written over."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import yaml

import hydrafit
from conftest import BIN, read_metrics, run_cli

QUICK = ["trainer.max_epochs=2", "callbacks.fit_plot.n_images=0", "~callbacks.progress_bar"]


def start_together(cwd: Path, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Start every command at once from `cwd` (default output dirs), then wait for all."""
    procs = [subprocess.Popen([str(BIN / "hydrafit-train"), *c], cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    done = [(p, *p.communicate(timeout=600)) for p in procs]
    for p, out, err in done:
        assert p.returncode == 0, err[-3000:]
    return done


def test_eight_runs_started_together_get_eight_directories(tmp_path):
    start_together(tmp_path, [[f"seed={s}", *QUICK] for s in range(8)])
    runs = sorted((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 8, runs
    seeds = []
    for run in runs:
        seeds.append(yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["seed"])
        assert read_metrics(run)["status"] == "completed"
        assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
        assert yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())[0] == f"seed={seeds[-1]}"
    assert sorted(seeds) == list(range(8))
    stamps = [r.name[:19] for r in runs]  # <date>_<time>, then _01, _02 in the same second
    assert all(r.name == s or r.name[19:20] == "_" for r, s in zip(runs, stamps))


def test_three_sweeps_started_together_get_three_directories(tmp_path):
    start_together(tmp_path, [["-m", f"seed={s},{s + 10}", *QUICK] for s in range(3)])
    sweeps = sorted((tmp_path / "outputs" / "multiruns").iterdir())
    assert len(sweeps) == 3, sweeps
    found = set()
    for sweep in sweeps:
        assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
        for job in ("0", "1"):
            assert read_metrics(sweep / job)["status"] == "completed"
            found.add(yaml.safe_load((sweep / job / ".hydra" / "config.yaml").read_text())["seed"])
    assert found == {0, 10, 1, 11, 2, 12}
    assert not (tmp_path / "outputs" / "runs").exists()  # a sweep claims no run directory


def digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("flag,key", [([], "hydra.run.dir"), (["-m"], "hydra.sweep.dir")])
def test_an_existing_run_or_sweep_named_explicitly_is_refused_untouched(tmp_path, default_run, flag, key):
    """hydra.run.dir / hydra.sweep.dir of an existing run: one line, exit 2, not a byte changed."""
    before = digest(default_run)
    proc = run_cli(*flag, "seed=7", f"{key}={default_run}", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line, = proc.stderr.strip().splitlines()
    assert line.startswith(f"hydrafit-train: error: {key}: '{default_run}' already holds a run; "
                           f"continue it with hydrafit-train resume={default_run}")
    assert digest(default_run) == before


def test_overwrite_replaces_an_existing_run(tmp_path):
    run = tmp_path / "run"
    hydrafit.fit([*QUICK, "seed=1"], run_dir=run)  # the existing run (in-process)
    (run / "stale.txt").write_text("from the first run")
    run_cli(*QUICK, "seed=2", f"hydra.run.dir={run}", "overwrite=true", cwd=tmp_path)
    assert not (run / "stale.txt").exists()
    assert yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["seed"] == 2
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_an_empty_or_new_directory_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    for name in ("empty", "new/nested"):
        run_cli(*QUICK, f"hydra.run.dir={tmp_path / name}", cwd=tmp_path)
        assert read_metrics(tmp_path / name)["status"] == "completed"
