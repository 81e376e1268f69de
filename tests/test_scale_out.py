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


def slurm_launcher(*overrides: str):
    """The hydra.launcher node `hydrafit-train -m <overrides>` would launch with, composed here
    (no SLURM needed), its ${hydrafit.gpus:...} resolvable."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydrafit.config import resolvers  # noqa: F401  ${hydrafit.gpus:...}
    from hydrafit.config.preflight import composed

    return composed(list(overrides)).hydra.launcher


def test_slurm_launcher_asks_no_gpu_unless_the_trainer_trains_on_gpus():
    """A CPU node takes the shipped defaults: no GPU (a GPU request is refused there), 1 CPU, 2 GB."""
    cpu = slurm_launcher("hydra/launcher=slurm")
    assert cpu._target_ == "hydra_plugins.hydrafit_sweeper.slurm_launcher.SlurmLauncher"
    assert (cpu.gpus_per_task, cpu.cpus_per_task, cpu.mem_gb, cpu.tasks_per_node, cpu.timeout_min,
            cpu.pending_timeout_min) == (None, 1, 2, 1, 60, 30)
    assert slurm_launcher("hydra/launcher=slurm", "trainer=cpu").gpus_per_task is None
    assert slurm_launcher("hydra/launcher=slurm", "trainer=gpu").gpus_per_task == 1
    assert slurm_launcher("hydra/launcher=slurm", "trainer=ddp").gpus_per_task == 1  # devices=auto
    assert slurm_launcher("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4").gpus_per_task == 4
    assert slurm_launcher("hydra/launcher=slurm", "trainer=gpu", "trainer.devices=[0,2]").gpus_per_task == 2
    vectorized = slurm_launcher("hydra/launcher=slurm_vectorized")
    assert (vectorized.max_population, vectorized.gpus_per_task, vectorized.cpus_per_task, vectorized.mem_gb) == \
        (256, None, 2, 4)
    assert slurm_launcher("hydra/launcher=slurm_vectorized", "trainer=gpu").gpus_per_task == 1


def test_slurm_launchers_instantiate_with_their_keys(tmp_path):
    """Hydra builds both plugins from their nodes; sbatch's keys become submitit's parameters."""
    from hydra.utils import instantiate
    from omegaconf import open_dict, read_write

    for choice, plugin in (("slurm", "SlurmLauncher"), ("slurm_vectorized", "SlurmVectorizedLauncher")):
        launcher = slurm_launcher(f"hydra/launcher={choice}", "hydra.launcher.partition=cpu")
        with read_write(launcher), open_dict(launcher):  # no ${hydra.sweep.dir} or ${hydra.job.name} outside a run
            launcher.submitit_folder, launcher.name = str(tmp_path / ".submitit"), "hydrafit"
        built = instantiate(launcher)
        assert type(built).__name__ == plugin
        parameters = built.queue.executor().parameters
        assert (parameters["partition"], parameters["cpus_per_task"], parameters["job_name"]) == \
            ("cpu", launcher.cpus_per_task, "hydrafit")
        assert "gpus_per_task" not in parameters


def test_a_slurm_job_that_returned_nothing_is_recorded_by_how_it_ended(tmp_path):
    """No cluster: jobs that left the queue without a result, as sacct tells their end. One that
    never started is `cancelled`; one killed while it ran (its metrics.json says `running`) is
    `died`, which resume_sweep= continues from its last.ckpt; an end a job recorded itself stays.
    tests/cluster/test_slurm.py meets the cancelled ones on a real cluster."""
    import json
    from types import SimpleNamespace

    from hydrafit.launch.cluster import record
    from hydrafit.launch.slurm import RESULT_GRACE_S, Watch

    class Job:  # what Watch reads of submitit's SlurmJob
        def __init__(self, job_id: str, state: str, node: str):
            self.job_id, self.state, self.node = job_id, state, node
            self.paths = SimpleNamespace(stderr=tmp_path / f"{job_id}.err")

        def get_info(self, mode: str) -> dict:
            return {"NodeList": self.node}

    jobs = [Job("7_0", "CANCELLED by 0", "None assigned"), Job("7_1", "UNKNOWN", "None assigned"),
            Job("7_2", "TIMEOUT", "node1"), Job("7_3", "NODE_FAIL", "node1"), Job("7_4", "CANCELLED by 0", "node1")]
    watch = Watch(jobs, [f"#{n}" for n in range(5)], pending_timeout_min=None)
    watch.left_queue = {n: 0.0 for n in range(5)}
    assert watch.ended(2, now=RESULT_GRACE_S / 2) is None  # its result may still be on its way
    ends = [watch.ended(n, now=RESULT_GRACE_S) for n in range(5)]
    assert [(e.status, e.why) for e in ends] == [
        ("cancelled", "SLURM job 7_0 was cancelled before it started (CANCELLED by 0)"),
        ("cancelled", "SLURM job 7_1 was cancelled before it started"),  # a pending array task: no record
        ("died", "SLURM job 7_2 ended TIMEOUT without returning a result (raise hydra.launcher.timeout_min)"),
        ("died", "SLURM job 7_3 ended NODE_FAIL without returning a result (its node failed)"),
        ("cancelled", "SLURM job 7_4 was cancelled (CANCELLED by 0) while running, and returned no result")]

    assert record(tmp_path / "0", ends[0]) == ("cancelled", ends[0].why)
    assert read_metrics(tmp_path / "0") == {"status": "cancelled", "error": ends[0].why}
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "metrics.json").write_text(json.dumps({"status": "running", "host": "node1", "pid": 4}))
    assert record(tmp_path / "2", ends[2]) == ("died", ends[2].why)
    assert read_metrics(tmp_path / "2") == {"status": "died", "error": ends[2].why, "host": "node1", "pid": 4}
    (tmp_path / "4").mkdir()
    (tmp_path / "4" / "metrics.json").write_text(json.dumps({"status": "interrupted", "error": "SIGTERM received"}))
    assert record(tmp_path / "4", ends[4]) == ("interrupted", "SIGTERM received")


def test_readme_scaling_out_section_is_what_these_tests_run(tmp_path):
    """Each command of README "Scaling out" maps to a test above; the GPU ones are composed."""
    from test_docs import commands, page, section

    text = page("scaling-out.md")
    lines = commands(text.split("\n## ")[0]) + commands(section(text, "A cluster"))
    assert lines == [
        "hydrafit-train trainer=ddp_cpu",  # test_two_rank_cpu_ddp_equals_single_process...
        "hydrafit-train trainer=ddp trainer.devices=4",  # composed by test_configs (CUDA only)
        "hydrafit-train -m trainer=ddp_cpu trainer.strategy=ddp_spawn optimizer.lr=0.01,0.03",
        "hydrafit-train -m hydra/launcher=submitit_local optimizer.lr=0.01,0.03",
        # tests/cluster/test_slurm.py runs the first and the third of these on a real cluster
        # (make test-cluster); the second, a GPU one, is composed below
        "hydrafit-train -m hydra/launcher=slurm optimizer.lr=0.003,0.01,0.03",
        "hydrafit-train -m hydra/launcher=slurm hydra.launcher.partition=gpu trainer=gpu "
        "optimizer.lr=0.003,0.01,0.03",
        "hydrafit-train -m hydra/launcher=slurm_vectorized optimizer.lr=0.001,0.003,0.01,0.03 seed=range(1,17)",
    ]
    for line in lines[1], lines[5]:  # no GPU or SLURM here: Hydra composes what they would run
        args = [a for a in line.split()[1:] if a != "-m" and "," not in a]  # one point of the sweep
        job = run_cli(*args, "--cfg", "job", cwd=tmp_path).stdout
        assert "accelerator: gpu" in job
    assert "strategy: ddp" in run_cli("trainer=ddp", "trainer.devices=4", "--cfg", "job", cwd=tmp_path).stdout
