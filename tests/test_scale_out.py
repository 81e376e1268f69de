"""DDP under Hydra: one run dir, sharded data, the same fit as one process; multirun rules; GPU."""
from __future__ import annotations

import pytest
import torch

import hydrafit
from conftest import read_metrics, run_cli

NUMBERS = ("train/mse", "truth/rmse")


def test_two_rank_cpu_ddp_equals_single_process_and_leaves_one_run_dir(tmp_path):
    """Mini-batches of 32, several optimizer steps per Lightning batch (dataset.steps_per_batch):
    each manual backward is all-reduced, so 2 ranks x 16 points train as one process's 32."""
    args = ("dataset.batch_size=32", "trainer.max_epochs=50", "callbacks.fit_plot.n_images=1",
            "callbacks.model_checkpoint.every_n_epochs=25")
    run = tmp_path / "outputs" / "the_run"
    run_cli("trainer=ddp_cpu", *args, f"hydra.run.dir={run}", cwd=tmp_path, timeout=300)
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["the_run"]
    single = hydrafit.fit(args, run_dir=tmp_path / "single").metrics  # the reference: in-process
    ddp = read_metrics(run)
    assert ddp["status"] == "completed" and ddp["epochs"] == 50
    for key in NUMBERS:
        assert ddp[key] == pytest.approx(single[key], abs=1e-5), key
    logs = {p.name: p.read_text() for p in run.glob("*.log")}
    assert "Rank 0 of 2 trains on its shard: 64 of 128 points" in logs["train.log"]
    assert "Rank 1 of 2 trains on its shard: 64 of 128 points" in logs["train_ddp_process_1.log"]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1  # rank 0 only
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_multirun_refuses_subprocess_ddp_up_front(tmp_path):
    proc = run_cli("-m", "trainer=ddp_cpu", "optimizer.lr=0.01,0.03", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                   cwd=tmp_path, check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "hydrafit-train: error: trainer.strategy=ddp (devices=2) cannot run under --multirun: "
        "Lightning's DDP launcher would re-run the sweep; use trainer.strategy=ddp_spawn"]
    assert not (tmp_path / "sweep").exists()


def test_multirun_job_that_picks_ddp_fails_alone(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "trainer=default,ddp_cpu", "trainer.max_epochs=3", "callbacks.fit_plot.n_images=0",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path, check=False, timeout=180)
    assert proc.returncode != 0
    assert read_metrics(sweep / "0")["status"] == "completed"
    failed = read_metrics(sweep / "1")
    assert failed["status"] == "failed" and "use trainer.strategy=ddp_spawn" in failed["error"]


def test_multirun_with_ddp_spawn_works(tmp_path):
    sweep = tmp_path / "sweep"
    run_cli("-m", "trainer=ddp_cpu", "trainer.strategy=ddp_spawn", "optimizer.lr=0.01,0.03",
            "trainer.max_epochs=10", "callbacks.fit_plot.n_images=1", f"hydra.sweep.dir={sweep}",
            cwd=tmp_path, timeout=300)
    for job in ("0", "1"):
        metrics = read_metrics(sweep / job)
        assert metrics["status"] == "completed" and metrics["epochs"] == 10
        assert (sweep / job / "fit.png").exists() and (sweep / job / "checkpoints" / "last.ckpt").exists()
    assert (sweep / "summary.csv").read_text().count(",completed,") == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_trainer_runs_the_default_experiment_on_cuda(tmp_path):
    run = tmp_path / "run"
    run_cli("trainer=gpu", f"hydra.run.dir={run}", cwd=tmp_path)
    metrics = read_metrics(run)
    assert metrics["train/mse"] <= 0.025 and metrics["truth/rmse"] <= 0.12
    assert "cuda" in (run / "train.log").read_text().lower()


def test_submitit_local_sweep_completes_with_its_summary(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    run_cli("-m", "hydra/launcher=submitit_local", "optimizer.lr=0.01,0.03", "trainer.max_epochs=5",
            "callbacks.fit_plot.n_images=0", f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=300)
    for job in ("0", "1"):
        assert read_metrics(sweep / job)["status"] == "completed"
    rows = (sweep / "summary.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",completed," in row for row in rows[1:]), rows
    assert (sweep / ".submitit").is_dir()  # really submitit's executor, not the basic launcher


def test_slurm_launcher_defaults_compose_and_instantiate(tmp_path):
    """No SLURM here: check the documented defaults and that the launcher can be built."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    proc = run_cli("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra",
                   "--package", "hydra.launcher", cwd=tmp_path)
    launcher = OmegaConf.create(proc.stdout)  # the hydra.launcher node
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_task, launcher.tasks_per_node, launcher.timeout_min) == \
        ("gpu", 1, 1, 60)
    # no ${hydra.sweep.dir} or ${hydra.job.name} outside a run
    launcher.submitit_folder, launcher.name = str(tmp_path / ".submitit"), "hydrafit"
    assert type(instantiate(launcher)).__name__ == "SlurmLauncher"


def test_readme_scaling_out_section_is_what_these_tests_run(tmp_path):
    """Each command of README "Scaling out" maps to a test above; the GPU ones are composed."""
    from test_docs import commands, page

    lines = commands(page("scaling-out.md"))
    assert lines == [
        "hydrafit-train trainer=ddp_cpu",  # test_two_rank_cpu_ddp_equals_single_process...
        "hydrafit-train trainer=ddp trainer.devices=4",  # composed by test_configs (CUDA only)
        "hydrafit-train -m trainer=ddp_cpu trainer.strategy=ddp_spawn optimizer.lr=0.01,0.03",
        "hydrafit-train -m hydra/launcher=submitit_local optimizer.lr=0.01,0.03",
        "hydrafit-train -m hydra/launcher=slurm hydra.launcher.partition=gpu trainer=gpu "
        "optimizer.lr=0.003,0.01,0.03",
    ]
    for line in lines[1], lines[4]:  # no GPU or SLURM here: Hydra composes what they would run
        args = [a for a in line.split()[1:] if a != "-m" and "," not in a]  # one point of the sweep
        job = run_cli(*args, "--cfg", "job", cwd=tmp_path).stdout
        assert "accelerator: gpu" in job
    assert "strategy: ddp" in run_cli("trainer=ddp", "trainer.devices=4", "--cfg", "job", cwd=tmp_path).stdout
