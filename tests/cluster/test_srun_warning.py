"""Lightning's "The `srun` command is available on your system but is not used": its SLURM
detection says it in every run once slurm's client is installed. hydrafit silences it outside a
SLURM allocation (hydrafit.engine.startup.quiet_lightning) and keeps it inside one, where a job's
processes started without srun would hang.

Run: make test-cluster   (this file: about 20 s on 2 cores)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import BIN, read_metrics

MESSAGE = "The `srun` command is available on your system but is not used"
OUTSIDE_SLURM = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


@pytest.fixture(scope="module")
def srun():
    path = shutil.which("srun")
    if path is None:
        pytest.skip("no srun on PATH (slurm's client: make test-cluster installs it)")
    return path


def test_lightning_warns_here_without_hydrafit(srun):
    """The premise: where srun is installed, Lightning's own check warns outside an allocation."""
    code = ("import warnings; warnings.simplefilter('always')\n"
            "from lightning_fabric.plugins.environments.slurm import SLURMEnvironment\n"
            "SLURMEnvironment._validate_srun_used()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=OUTSIDE_SLURM,
                          timeout=120)
    assert proc.returncode == 0 and MESSAGE in proc.stderr


def test_a_local_run_does_not_warn(srun, tmp_path):
    proc = subprocess.run([str(BIN / "hydrafit-train"), "trainer.max_epochs=2", "hydra.run.dir=run"], cwd=tmp_path,
                          capture_output=True, text=True, env=OUTSIDE_SLURM, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_metrics(tmp_path / "run")["status"] == "completed"
    for text in (proc.stdout, proc.stderr, (tmp_path / "run" / "train.log").read_text()):
        assert MESSAGE not in text and "srun" not in text


def test_a_run_in_a_slurm_job_without_srun_still_warns(slurm_cluster, tmp_path):
    """The same command as a batch job's script, not started by srun: Lightning's hint stays."""
    proc = subprocess.run(["sbatch", "--wait", "-J", "no-srun", "-o", "job.out", "-c", "1", "--mem=2G",
                           "--wrap", f"{BIN / 'hydrafit-train'} trainer.max_epochs=2 hydra.run.dir=run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **slurm_cluster.env})
    assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp_path / "job.out").read_text()[-3000:]
    assert read_metrics(tmp_path / "run")["status"] == "completed"
    assert MESSAGE in (tmp_path / "job.out").read_text()
    job_id = proc.stdout.split()[-1]
    assert {"JobID": job_id, "JobName": "no-srun", "State": "COMPLETED"} in slurm_cluster.sacct_jobs()
