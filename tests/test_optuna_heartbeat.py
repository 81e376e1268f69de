"""Heartbeats of a search that several workers share (docs/search.md, "Many workers, one study"):
a worker killed mid-trial (kill -9) leaves its trial running in the study; a worker still running
fails it once its last heartbeat is older than hydra.sweeper.grace_period, asks its parameters
again and completes the search's n_trials. Runs the docs' `hydra.sweeper.join=true` command, with
heartbeats of 1 s and a grace period of 4 s so that the test takes seconds.

Run: .venv/bin/python -m pytest tests/test_optuna_heartbeat.py -q -n 0   (about 30 s on 2 cores)
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from conftest import BIN, run_cli
from test_sweeps import readme, summary_rows

FAST = ["trainer.max_epochs=20", "callbacks.fit_plot.n_images=0"]
# 1 s between heartbeats, a trial unheard for 4 s is dead: SQLite stamps heartbeats to the second,
# so 4 s leaves a live worker two late heartbeats on a loaded machine before it is taken for dead.
HEARTBEAT = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=4"]
N_TRIALS = 4


def study(sweep_dir: Path) -> optuna.Study:
    """The shared study, opened as the workers open it: under the store's creation lock
    (hydrafit.sweeps.study.storage), since a worker may be creating its tables right now."""
    from hydrafit.sweeps.study import load, storage_url

    found = load(storage_url(None, sweep_dir), "hydrafit")
    if found is None:
        raise KeyError("the study is being created")
    return found


@pytest.fixture
def start_worker(tmp_path):
    """start_worker(sweep_dir, *overrides): one worker of the docs' shared search, its output in
    tmp_path/worker-<i>.log (i counting from 0). Workers still running when the test ends are killed."""
    procs = []

    def start(sweep_dir: Path, *extra: str) -> subprocess.Popen:
        args = readme("hydra.sweeper.join=true")
        command = [str(BIN / args[0]), *args[1:], *FAST, *HEARTBEAT, f"hydra.sweeper.n_trials={N_TRIALS}",
                   f"hydra.sweep.dir={sweep_dir}", *extra]
        with open(tmp_path / f"worker-{len(procs)}.log", "w") as log:
            procs.append(subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def trials_of(proc: subprocess.Popen, sweep_dir: Path, state: str) -> list:
    """The study's trials in `state` that worker `proc` asked (user attribute worker: host:pid)."""
    if not (sweep_dir / "optuna.db").exists():
        return []
    try:
        trials = study(sweep_dir).get_trials(deepcopy=False)
    except KeyError:  # the study is being created
        return []
    mine = f":{proc.pid}"
    return [t for t in trials if t.state.name == state and t.user_attrs.get("worker", "").endswith(mine)]


def training(job_dir: Path) -> bool:
    try:
        return json.loads((job_dir / "metrics.json").read_text())["status"] == "running"
    except (OSError, ValueError):
        return False


def wait_for(predicate, *procs: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, "a worker ended early"
        time.sleep(0.1)


def test_a_worker_killed_mid_trial_has_its_trial_retried_by_the_other(tmp_path, start_worker):
    sweep_dir = tmp_path / "shared"
    # The worker to kill trains for ever, so that the kill lands mid-trial however loaded the machine.
    doomed = start_worker(sweep_dir, "trainer.max_epochs=1000000")
    wait_for(lambda: any(training(sweep_dir / str(t.number)) for t in trials_of(doomed, sweep_dir, "RUNNING")),
             doomed)  # its first trial is training
    (killed,) = trials_of(doomed, sweep_dir, "RUNNING")
    survivor = start_worker(sweep_dir)
    wait_for(lambda: trials_of(survivor, sweep_dir, "COMPLETE"), survivor, doomed)  # both share the study
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    assert survivor.wait(timeout=240) == 0, (tmp_path / "worker-1.log").read_text()[-3000:]

    trials = study(sweep_dir).trials
    completed = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(completed) == N_TRIALS  # the search reached n_trials
    assert trials[killed.number].state.name == "FAIL"
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert retry in completed and retry.params == killed.params
    assert retry.user_attrs["worker"].endswith(f":{survivor.pid}")
    others = [t for t in trials if t not in completed and t.number != killed.number]
    assert all(t.user_attrs.get("surplus") for t in others), [(t.number, t.state.name) for t in others]

    # What the killed trial left is set aside, as a resume does; the summary lists its retry.
    assert not (sweep_dir / str(killed.number)).exists()
    (attempt,) = (sweep_dir / "previous_attempts").iterdir()
    assert attempt.name.startswith(f"{killed.number}_") and training(attempt)
    rows = summary_rows(sweep_dir)
    assert [(int(r["job"]), r["status"]) for r in rows] == [(t.number, "completed") for t in completed]
    log = (tmp_path / "worker-1.log").read_text()
    assert f"Trial #{killed.number}: its worker stopped (no heartbeat for 4 s); failed, asked again" in log
    proc = run_cli(str(sweep_dir), cwd=tmp_path, script="hydrafit-sweep-report")
    assert f"{N_TRIALS} jobs: {N_TRIALS} completed" in proc.stdout


def test_a_grace_period_within_the_heartbeat_interval_is_refused(tmp_path):
    """A live trial would be taken for dead between two heartbeats: refused before any study."""
    args = readme("hydra.sweeper.join=true")
    proc = run_cli(*args[1:], "hydra.sweeper.heartbeat_interval=10", "hydra.sweeper.grace_period=10",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith("hydrafit-train: error: hydra.sweeper.grace_period must be greater than "
                                  "hydra.sweeper.heartbeat_interval (10), got 10")
    assert not (tmp_path / "sweep" / "optuna.db").exists()
