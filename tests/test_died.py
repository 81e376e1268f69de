"""Statuses that tell the truth, and resumes that continue: a job killed by the OS is `died`,
not `running` for ever; resume= and resume_sweep= continue interrupted and died jobs from
their own last.ckpt, ending bitwise where the same job ends without a stop (same machine).

The sweep sweeps trainer.max_epochs: job #0 is long enough to stop mid-fit (the signal comes
once its first checkpoint exists, hundreds of epochs before its end), job #1 is short.

Run: .venv/bin/python -m pytest tests/test_died.py -q -n 0
"""
from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import BIN, read_metrics, run_cli
from hydrafit.rundir import files
from hydrafit.rundir.owner import owner_record

# Mini-batches and a step schedule: a continued job must also get each epoch's shuffle and
# learning rate right to equal the job run without a stop.
SWEEP = ["-m", "trainer.max_epochs=600,60", "dataset.batch_size=64", "scheduler=step",
         "scheduler.step_size=200", "callbacks.model_checkpoint.every_n_epochs=1",
         "callbacks.fit_plot.n_images=0"]
NUMBERS = ("train/mse", "truth/rmse", "baseline/truth_rmse", "epochs")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The sweep run without a stop."""
    cwd = tmp_path_factory.mktemp("reference")
    run_cli(*SWEEP, f"hydra.sweep.dir={cwd / 'sweep'}", cwd=cwd)
    return cwd / "sweep"


def stopped_sweep(sweep_dir: Path, cwd: Path, signum: int) -> subprocess.Popen:
    """Start the sweep, send `signum` once job #0 has saved its first checkpoint (it trains, and
    its signal handler is in place), wait for the exit. Checks, meanwhile, that a job whose
    process lives is `running`, recorded as this sweep's process."""
    proc = subprocess.Popen([str(BIN / "hydrafit-train"), *SWEEP, f"hydra.sweep.dir={sweep_dir}"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (sweep_dir / "0" / "checkpoints" / "last.ckpt").is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert files.read_metrics(sweep_dir / "0" / "metrics.json")[0] == "running"
    proc.send_signal(signum)
    proc.communicate(timeout=120)
    return proc


def summary_rows(sweep_dir: Path) -> list[tuple[str, str]]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return [(row["job"], row["status"]) for row in csv.DictReader(f)]


def numbers(job: Path) -> dict:
    metrics = read_metrics(job)
    assert metrics["status"] == "completed", metrics
    return {k: metrics[k] for k in NUMBERS}


def losses(job: Path) -> list[tuple[int, float]]:
    """train/loss of the job's TensorBoard run: (step, value), in order."""
    runs = [p.parent for p in (job / "tensorboard").rglob("events.out.tfevents.*")]
    assert len(set(runs)) == 1, runs  # one TensorBoard run, continued in place
    events = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0}).Reload()
    return [(e.step, e.value) for e in events.Scalars("train/loss")]


def test_a_job_killed_mid_fit_is_died_and_both_resumes_continue_it(tmp_path, reference):
    sweep_dir = tmp_path / "sweep"
    proc = stopped_sweep(sweep_dir, tmp_path, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    record = read_metrics(sweep_dir / "0")
    assert record["status"] == "running" and record["pid"] == proc.pid  # the basic launcher's process
    assert record["host"] == owner_record()["host"] and record["started"]

    report = run_cli(str(sweep_dir), cwd=tmp_path, script="hydrafit-sweep-report", check=False)
    assert report.returncode == 1, report.stderr[-2000:]
    assert summary_rows(sweep_dir) == [("0", "died"), ("1", "missing")]
    assert f"#0 trainer.max_epochs=600: died: its process (pid {proc.pid} on " in report.stderr
    assert "| died |" in (sweep_dir / "summary.md").read_text()
    copy = tmp_path / "copy"
    shutil.copytree(sweep_dir, copy)

    run_cli(f"resume={sweep_dir / '0'}", cwd=tmp_path)  # the job alone, as a run
    assert numbers(sweep_dir / "0") == numbers(reference / "0")  # bitwise
    assert "Resuming   a run that died: its process (pid" in (sweep_dir / "0" / "train.log").read_text()

    resumed = run_cli("-m", f"resume_sweep={copy}", cwd=tmp_path)  # the whole sweep
    assert "Job #0 continues from its last.ckpt (epoch " in resumed.stdout and "): died" in resumed.stdout
    for n in ("0", "1"):
        assert numbers(copy / n) == numbers(reference / n)
    assert summary_rows(copy) == [("0", "completed"), ("1", "completed")]
    assert not (copy / "previous_attempts").exists()  # nothing started again


def test_an_interrupted_sweep_continues_from_last_ckpt_with_either_launcher(tmp_path, reference):
    sweep_dir = tmp_path / "sweep"
    proc = stopped_sweep(sweep_dir, tmp_path, signal.SIGINT)
    assert proc.returncode == 130, proc.stderr[-3000:]
    stopped = read_metrics(sweep_dir / "0")
    assert stopped["status"] == "interrupted" and 0 < stopped["epochs"] < 600, stopped
    vectorized = tmp_path / "vectorized"
    shutil.copytree(sweep_dir, vectorized)

    proc = run_cli("-m", f"resume_sweep={sweep_dir}", cwd=tmp_path)  # the launcher it ran with: basic
    assert f"Job #0 continues from its last.ckpt (epoch {stopped['epochs']}): interrupted" in proc.stdout
    for n in ("0", "1"):
        assert numbers(sweep_dir / n) == numbers(reference / n)  # bitwise
    assert losses(sweep_dir / "0") == losses(reference / "0")  # the redone tail dropped, none twice
    assert "Resumed: #0 continued from its last.ckpt." in (sweep_dir / "summary.md").read_text()
    assert (sweep_dir / "0" / ".hydra" / "overrides.yaml").read_text() == \
        (reference / "0" / ".hydra" / "overrides.yaml").read_text()  # its record kept

    # Job #1 as if interrupted too, but its last.ckpt cut short: it starts again
    shutil.copytree(vectorized / "0", vectorized / "1")
    ckpt = vectorized / "1" / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:2000])
    proc = run_cli("-m", f"resume_sweep={vectorized}", "hydra/launcher=vectorized", cwd=tmp_path)
    assert "vectorized: job #0 runs alone: continues from its last.ckpt" in proc.stdout
    assert "Job #1 starts again: interrupted, but " in proc.stdout and "last.ckpt is not a readable" in proc.stdout
    for n in ("0", "1"):
        assert numbers(vectorized / n) == numbers(reference / n)
    assert ("Resumed: #0 continued from its last.ckpt; #1 started again (earlier attempts in "
            "previous_attempts/).") in (vectorized / "summary.md").read_text()


def test_population_members_are_running_as_the_launcher_and_died_with_it(tmp_path):
    """A vectorised population trains in the launcher's process: its members' metrics.json say
    `running`, owned by that process, while it trains, and `died` once it is killed."""
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.Popen([str(BIN / "hydrafit-train"), "-m", "hydra/launcher=vectorized", "seed=1,2",
                             "trainer.max_epochs=5000", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paths = [sweep_dir / n / "metrics.json" for n in ("0", "1")]
    deadline = time.monotonic() + 120
    while not all(p.is_file() for p in paths) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [files.read_metrics(p)[0] for p in paths] == ["running", "running"]
    proc.kill()
    proc.wait(timeout=60)
    assert [json.loads(p.read_text())["pid"] for p in paths] == [proc.pid, proc.pid]
    assert [files.read_metrics(p)[0] for p in paths] == ["died", "died"]


def test_resumes_refuse_what_a_live_process_runs(tmp_path, reference):
    """A `running` record owned by a live process (this test's): resume= and resume_sweep=
    refuse in one line, exit 2, and touch nothing of the sweep."""
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(reference, sweep_dir)
    (sweep_dir / "0" / "metrics.json").write_text(json.dumps({"status": "running", **owner_record()}))
    before = {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("*")}

    proc = run_cli("-m", f"resume_sweep={sweep_dir}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"hydrafit-train: error: resume_sweep: job #0 of '{sweep_dir}' is still running (pid ")
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.rglob("*")} == before

    proc = run_cli(f"resume={sweep_dir / '0'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr[-2000:]
    assert "resume: " in proc.stderr and "is still running (pid " in proc.stderr and "on this host" in proc.stderr
    assert read_metrics(sweep_dir / "0")["status"] == "running"


def test_true_status_of_a_running_record():
    """What a reader makes of `status: running`: the process asked, where it can be."""
    me = owner_record()
    assert files.true_status({"status": "running", **me}) == ("running", "")
    gone = subprocess.Popen(["true"])
    gone.wait()
    status, why = files.true_status({"status": "running", **me, "pid": gone.pid, "pid_started": None})
    assert status == "died" and f"pid {gone.pid} on " in why
    if me["pid_started"] is not None:  # /proc tells a reused pid by its process's start
        reused = {**me, "pid_started": me["pid_started"] + 1}
        assert files.true_status({"status": "running", **reused})[0] == "died"
    assert files.true_status({"status": "running", **me, "host": "elsewhere"}) == ("running (host elsewhere)", "")
    assert files.true_status({"status": "running"}) == ("running", "")  # no owner recorded: nothing tells
    assert files.true_status({"status": "interrupted", **me, "pid": gone.pid}) == ("interrupted", "")
