"""hydra/launcher=slurm and hydra/launcher=slurm_vectorized against a real one-node SLURM cluster
(the `slurm_cluster` fixture: this machine's CPUs, no GPU), run as a user runs them: hydrafit-train
in another directory, with the cluster's SLURM_CONF. Each sweep is checked where it lands: its run
dirs, its summary, its lines on the console, and the jobs sacct and squeue know.

Run: make test-cluster   (this file: about 2 minutes on 2 cores)
"""
from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from conftest import BIN, read_metrics, run_cli

SHORT = ("trainer.max_epochs=5", "callbacks.fit_plot.n_images=0")
# docs/scaling-out.md's commands (tests/test_scale_out.py reads them there), run here shortened
DOCS = {"slurm": ("-m", "hydra/launcher=slurm", "optimizer.lr=0.003,0.01,0.03"),
        "slurm_vectorized": ("-m", "hydra/launcher=slurm_vectorized", "optimizer.lr=0.001,0.003,0.01,0.03",
                             "seed=range(1,17)")}
RUN_DIR = {".hydra", "checkpoints", "fit.png", "metrics.json", "tensorboard", "train.log"}


def train(cluster, cwd: Path, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, env=cluster.env, check=check, timeout=timeout)


def start(cluster, cwd: Path, *args: str) -> subprocess.Popen:
    """hydrafit-train running in the background (stdout and stderr into files beside it)."""
    return subprocess.Popen([str(BIN / "hydrafit-train"), *args], cwd=cwd, env={**os.environ, **cluster.env},
                            stdout=open(cwd / "stdout", "w"), stderr=open(cwd / "stderr", "w"))


def finished(proc: subprocess.Popen, cwd: Path, timeout: float = 300) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a `start`ed hydrafit-train, once it has ended."""
    code = proc.wait(timeout=timeout)
    return code, (cwd / "stdout").read_text(), (cwd / "stderr").read_text()


def slurm(cluster, *command: str) -> str:
    return subprocess.run(command, env={**os.environ, **cluster.env}, capture_output=True, text=True,
                          check=True, timeout=60).stdout


def wait_for(condition, what: str, timeout: float = 120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"waited {timeout} s for {what}")


def cluster_jobs(sweep: Path) -> list[str]:
    """The SLURM jobs the sweep submitted, as sacct -X counts them (an array's tasks, each), from
    submitit's folders in the sweep dir (.submitit/<id>, .submitit/<array id>_<task>)."""
    ids = {p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and p.name.replace("_", "").isdigit()}
    arrays = {i.split("_")[0] for i in ids if "_" in i}
    return sorted(i for i in ids if "_" in i or i not in arrays)


def summary(sweep: Path) -> list[dict]:
    with open(sweep / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def states(cluster, jobs: list[str]) -> dict[str, str]:
    return {j["JobID"]: j["State"] for j in cluster.sacct_jobs() if j["JobID"] in jobs}


def assert_complete(job: Path) -> None:
    assert RUN_DIR <= {p.name for p in job.iterdir()}, job
    assert read_metrics(job)["status"] == "completed", job
    assert (job / "checkpoints" / "last.ckpt").is_file(), job


def assert_said_once(stderr: str, job: str, status: str) -> None:
    """The sweep's end names job `job` once on stderr, with its status, and prints no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip().startswith(f"{job} ")]
    assert len(lines) == 1 and f": {status}" in lines[0], stderr[-3000:]


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text and "RunStopped" not in text, text[-3000:]


def test_shipped_defaults_run_a_grid_on_a_cpu_node(slurm_cluster, tmp_path):
    """docs/scaling-out.md's hydra/launcher=slurm command as shipped: no GPU asked
    (trainer=default), one CPU, 2 GB; three SLURM jobs, three complete run dirs, the summary."""
    sweep = tmp_path / "sweep"
    proc = train(slurm_cluster, tmp_path, *DOCS["slurm"], *SHORT, f"hydra.sweep.dir={sweep}")
    for n in range(3):
        assert_complete(sweep / str(n))
    assert [r["status"] for r in summary(sweep)] == ["completed"] * 3
    jobs = cluster_jobs(sweep)
    assert len(jobs) == 3 and set(states(slurm_cluster, jobs).values()) == {"COMPLETED"}
    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "--cpus-per-task=1" in script and "--mem=2GB" in script and "gpu" not in script.lower()
    assert f"Submitted SLURM jobs {' '.join(jobs)}" in proc.stdout + proc.stderr
    no_traceback(proc.stdout, proc.stderr)


def test_a_request_the_node_cannot_satisfy_fails_at_submission_in_one_line(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = train(slurm_cluster, tmp_path, "-m", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=64",
                 "optimizer.lr=0.01,0.03", *SHORT, f"hydra.sweep.dir={sweep}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "hydrafit-train: error: hydra.launcher: sbatch refused the sweep's jobs (partition=null, cpus_per_task=64, "
        "mem_gb=2, gpus_per_task=null, timeout_min=60): Batch job submission failed: More processors requested "
        "than permitted; what the partitions offer: sinfo -o '%P %c %m %G %l'"]
    assert not [p for p in sweep.iterdir() if p.name.isdigit()]  # no job started
    no_traceback(proc.stdout)


def test_jobs_that_cannot_start_are_cancelled_after_the_pending_timeout(slurm_cluster, tmp_path):
    """Held jobs (sbatch --hold) never start: after pending_timeout_min each is cancelled, with
    squeue's reason, and recorded `cancelled`; nothing is left in the queue."""
    sweep = tmp_path / "sweep"
    began = time.monotonic()
    proc = train(slurm_cluster, tmp_path, "-m", "hydra/launcher=slurm", "hydra.launcher.pending_timeout_min=0.05",
                 "++hydra.launcher.additional_parameters={hold:true}", "optimizer.lr=0.01,0.03", *SHORT,
                 f"hydra.sweep.dir={sweep}", check=False)
    assert proc.returncode == 1 and time.monotonic() - began < 60
    jobs = cluster_jobs(sweep)
    for n, lr in ((0, "0.01"), (1, "0.03")):
        why = read_metrics(sweep / str(n))
        assert why["status"] == "cancelled" and re.fullmatch(
            rf"SLURM job {jobs[n]} waited [3-9] s in the queue \(JobHeldUser\), none of the sweep's jobs running; "
            rf"cancelled after hydra.launcher.pending_timeout_min=0.05", why["error"]), why
        assert_said_once(proc.stderr, f"#{n} optimizer.lr={lr}:", "cancelled")
    assert [r["status"] for r in summary(sweep)] == ["cancelled", "cancelled"]
    assert not slurm(slurm_cluster, "squeue", "-h", "-j", jobs[0].split("_")[0]).strip()
    no_traceback(proc.stdout, proc.stderr)


def test_a_64_job_vectorised_sweep_is_one_cluster_job(slurm_cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = train(slurm_cluster, tmp_path, *DOCS["slurm_vectorized"], *SHORT, f"hydra.sweep.dir={sweep}")
    jobs = cluster_jobs(sweep)
    assert 1 <= len(jobs) <= 2 and set(states(slurm_cluster, jobs).values()) == {"COMPLETED"}, jobs
    assert sorted(int(p.name) for p in sweep.iterdir() if p.name.isdigit()) == list(range(64))
    for n in range(64):
        assert_complete(sweep / str(n))
    rows = summary(sweep)
    assert [r["job"] for r in rows] == [str(n) for n in range(64)] and {r["status"] for r in rows} == {"completed"}
    assert (rows[5]["optimizer.lr"], rows[5]["seed"]) == ("0.001", "6")
    log = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert "vectorized: 64 jobs -> 1 population of 64" in log  # trained as a population, on the node
    no_traceback(proc.stdout, proc.stderr)


def test_a_job_cancelled_while_pending_is_reported_and_resume_sweep_runs_it_on_slurm(slurm_cluster, tmp_path):
    """A job that takes the whole node keeps the sweep's two jobs pending; job #1 is cancelled
    there (scancel), the node is freed, #0 runs. resume_sweep= (no launcher named) runs #1 on SLURM."""
    blocker = slurm(slurm_cluster, "sbatch", "--parsable", "--exclusive", "-o", "/dev/null", "--wrap", "sleep 120").strip()
    wait_for(lambda: "RUNNING" in slurm(slurm_cluster, "squeue", "-h", "-j", blocker, "-o", "%T"), "the node to be taken")
    sweep = tmp_path / "sweep"
    proc = start(slurm_cluster, tmp_path, "-m", "hydra/launcher=slurm", "seed=1,2", *SHORT, f"hydra.sweep.dir={sweep}")
    try:
        pending = wait_for(lambda: [j for j in cluster_jobs(sweep) if j.endswith("_1")] if (sweep / ".submitit").is_dir()
                           else None, "the sweep's job #1")[0]
        assert "PENDING" in slurm(slurm_cluster, "squeue", "-h", "-j", pending, "-o", "%T")
        slurm(slurm_cluster, "scancel", pending)
    finally:
        slurm(slurm_cluster, "scancel", blocker)
    code, stdout, stderr = finished(proc, tmp_path)
    assert code == 1
    assert read_metrics(sweep / "1") == {"status": "cancelled",
                                         "error": f"SLURM job {pending} was cancelled before it started"}
    assert_said_once(stderr, "#1 seed=2:", "cancelled")
    assert_complete(sweep / "0")
    assert [r["status"] for r in summary(sweep)] == ["completed", "cancelled"]
    no_traceback(stdout, stderr)

    before = set(cluster_jobs(sweep))
    resumed = train(slurm_cluster, tmp_path, "-m", f"resume_sweep={sweep}")
    assert "hydra/launcher=slurm, the launcher the sweep ran with" in resumed.stdout + resumed.stderr
    (rerun,) = set(cluster_jobs(sweep)) - before
    assert states(slurm_cluster, [rerun]) == {rerun: "COMPLETED"}
    assert_complete(sweep / "1")
    assert [r["status"] for r in summary(sweep)] == ["completed", "completed"]


def test_a_running_job_scancelled_ends_interrupted_and_resume_sweep_completes_it(slurm_cluster, tmp_path):
    """scancel sends SIGTERM: the run stops gracefully after its epoch (last.ckpt), the sweep ends
    with one line for it, and resume_sweep= continues it from its checkpoint on SLURM."""
    sweep = tmp_path / "sweep"
    proc = start(slurm_cluster, tmp_path, "-m", "hydra/launcher=slurm", "seed=1", "trainer.max_epochs=10000",
                 "callbacks.fit_plot.n_images=0", f"hydra.sweep.dir={sweep}")
    wait_for(lambda: (sweep / "0" / "metrics.json").is_file() and "running" in (sweep / "0" / "metrics.json").read_text(),
             "job #0 to start training")
    time.sleep(1)
    (job,) = cluster_jobs(sweep)
    slurm(slurm_cluster, "scancel", job)
    code, stdout, stderr = finished(proc, tmp_path)
    assert code == 1
    stopped = read_metrics(sweep / "0")
    assert stopped["status"] == "interrupted" and 0 < stopped["epochs"] < 10000, stopped
    assert (sweep / "0" / "checkpoints" / "last.ckpt").is_file()
    assert_said_once(stderr, "#0:", "interrupted: SIGTERM received")
    no_traceback(stdout, stderr)

    resumed = train(slurm_cluster, tmp_path, "-m", f"resume_sweep={sweep}")
    assert f"Job #0 continues from its last.ckpt (epoch {stopped['epochs']})" in resumed.stdout + resumed.stderr
    assert len(cluster_jobs(sweep)) == 2
    assert_complete(sweep / "0")
    assert read_metrics(sweep / "0")["epochs"] == 10000


def test_ctrl_c_cancels_a_vectorised_sweeps_cluster_job_and_resume_sweep_completes_it(slurm_cluster, tmp_path):
    """Ctrl-C of hydrafit-train cancels its SLURM job: the population stops gracefully on the
    node, every member `interrupted`; exit code 130; nothing is left in the queue."""
    sweep = tmp_path / "sweep"
    proc = start(slurm_cluster, tmp_path, "-m", "hydra/launcher=slurm_vectorized", "optimizer.lr=0.01,0.03", "seed=1,2",
                 "trainer.max_epochs=4000", "callbacks.fit_plot.n_images=0", f"hydra.sweep.dir={sweep}")
    wait_for(lambda: all((sweep / str(n) / "metrics.json").is_file() for n in range(4)), "the population to start")
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    code, stdout, stderr = finished(proc, tmp_path)
    assert code == 130, stderr[-3000:]
    (job,) = cluster_jobs(sweep)
    assert states(slurm_cluster, [job])[job].startswith("CANCELLED")
    assert [r["status"] for r in summary(sweep)] == ["interrupted"] * 4
    for n in range(4):
        assert_said_once(stderr, f"#{n}", "interrupted")
    no_traceback(stdout, stderr)

    train(slurm_cluster, tmp_path, "-m", f"resume_sweep={sweep}")
    assert [r["status"] for r in summary(sweep)] == ["completed"] * 4
    assert len(cluster_jobs(sweep)) == 2


def test_pbt_on_slurm_vectorized_is_one_cluster_job_with_its_lineage(slurm_cluster, tmp_path):
    """hparams_search=pbt on hydra/launcher=slurm_vectorized: the population trains as PBT in one
    SLURM job (the policy travels with the chunk), its lineage in the sweep dir."""
    sweep = tmp_path / "sweep"
    proc = train(slurm_cluster, tmp_path, "-m", "hparams_search=pbt", "hydra/launcher=slurm_vectorized",
                 "hydra.sweeper.population=4", "trainer.max_epochs=20", "hydra.sweeper.perturbation_interval=10",
                 f"hydra.sweep.dir={sweep}")
    assert len(cluster_jobs(sweep)) == 1
    rows = (sweep / "pbt_policy.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,member,copied_from") and [r.split(",")[0] for r in rows[1:]] == ["10"]
    for n in range(4):
        assert (sweep / str(n) / "pbt_schedule.yaml").is_file()
    no_traceback(proc.stdout, proc.stderr)
