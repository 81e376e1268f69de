"""Shared fixtures: run `hydrafit-train` as a user does (a subprocess in another directory)."""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_cli(*args: str, cwd: Path, script: str = "hydrafit-train", check: bool = True,
            timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a console script of this venv in `cwd`; on an unexpected exit code show its output."""
    proc = subprocess.run([str(BIN / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(args)} exited {proc.returncode}\n"
                             f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}")
    return proc


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> Path:
    """The default experiment, run once for the session from a directory outside the repo.
    Under `make test`'s workers (pytest-xdist) too: the first worker to ask runs it, under a lock
    in the temp directory they share; the others wait for it and read it (tests only read it)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # each worker's basetemp is a popen-gw<N> folder in one session folder
    cwd = shared / "default_run_launch"
    with open(shared / "default_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not cwd.exists():
            cwd.mkdir()
            run_cli(cwd=cwd)
    runs = list((cwd / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]

