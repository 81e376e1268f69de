"""logger=mlflow and logger=many, read back with MLflow's own client, TensorBoard's
EventAccumulator and the CSV file."""
from __future__ import annotations

import csv

import pytest
import yaml

import hydrafit
from conftest import read_metrics, run_cli

pytest.importorskip("mlflow", reason="needs the mlflow extra: pip install 'hydrafit[mlflow]'")
from mlflow import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

EPOCHS = 30


def client(launch_dir) -> MlflowClient:
    """The default store: outputs/mlflow.db of the launch directory."""
    return MlflowClient(f"sqlite:///{launch_dir / 'outputs' / 'mlflow.db'}")


def leaves(node, prefix=""):
    """Flattened keys of a nested dict, as MLflow and TensorBoard's HPARAMS tab name them."""
    if not isinstance(node, dict):
        return {prefix[:-1]}
    return set().union(*(leaves(v, f"{prefix}{k}/") for k, v in node.items()))


def check_mlflow_run(mlflow: MlflowClient, run, run_dir, epochs: int) -> None:
    """One hydrafit run as MLflow holds it: the loss every epoch, the final metrics, fit.png."""
    history = mlflow.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(epochs))  # one point per epoch
    final = {k: v for k, v in read_metrics(run_dir).items() if "/" in k}
    assert {k: run.data.metrics[k] for k in final} == pytest.approx(final, rel=1e-12)
    assert run.info.status == "FINISHED" and run.data.tags["hydrafit.run_dir"] == str(run_dir)
    assert {a.path for a in mlflow.list_artifacts(run.info.run_id)} == {"fit.png", "config.yaml"}
    fit_png = mlflow.download_artifacts(run.info.run_id, "fit.png", str(run_dir.parent))
    assert open(fit_png, "rb").read() == (run_dir / "fit.png").read_bytes()


def job_overrides(job_dir) -> list[str]:
    """The job's overrides as Hydra recorded them (.hydra/overrides.yaml), in the command line's order."""
    return yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())


@pytest.fixture(scope="module")
def launch_dir(tmp_path_factory):
    """One launch directory, hence one store, for this module's runs: creating a store costs seconds."""
    return tmp_path_factory.mktemp("launch")


def test_mlflow_sweep_of_parallel_jobs_on_a_new_store(launch_dir):
    """Two joblib workers start on one store that does not exist yet: one run per job."""
    tmp_path = launch_dir
    assert not (tmp_path / "outputs").exists()
    run_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=mlflow",
            "logger.experiment_name=lr_sweep", "trainer.max_epochs=20", "callbacks.fit_plot.n_images=0",
            "optimizer.lr=0.01,0.03", "hydra.sweep.dir=sweep", cwd=tmp_path)
    mlflow = client(tmp_path)
    runs = mlflow.search_runs([mlflow.get_experiment_by_name("lr_sweep").experiment_id])
    assert sorted(r.data.tags["hydrafit.job_num"] for r in runs) == ["0", "1"]
    for run in runs:
        job_dir = tmp_path / "sweep" / run.data.tags["hydrafit.job_num"]
        assert run.data.tags["hydrafit.sweep_dir"] == str(tmp_path / "sweep")
        assert run.data.params["optimizer/lr"] == ("0.01", "0.03")[int(run.data.tags["hydrafit.job_num"])]
        assert run.info.run_name.startswith(f"{run.data.tags['hydrafit.job_num']}: {job_overrides(job_dir)[-1]},")
        check_mlflow_run(mlflow, run, job_dir, 20)


def test_logger_many_logs_the_run_completely_to_mlflow_tensorboard_and_csv(launch_dir, monkeypatch):
    tmp_path = launch_dir
    monkeypatch.chdir(tmp_path)
    result = hydrafit.fit([f"trainer.max_epochs={EPOCHS}", "callbacks.fit_plot.n_images=2", "logger=many"])
    mlflow = client(tmp_path)
    [run] = mlflow.search_runs([mlflow.get_experiment_by_name("hydrafit").experiment_id])
    check_mlflow_run(mlflow, run, result.run_dir, EPOCHS)
    assert run.info.run_name == result.run_dir.name

    hparams = yaml.safe_load((result.run_dir / "csv" / "hparams.yaml").read_text())
    assert set(run.data.params) == leaves(hparams) and run.data.params["optimizer/lr"] == "0.03"
    with open(result.run_dir / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    history = client(tmp_path).get_metric_history(run.info.run_id, "train/loss")
    assert losses == [m.value for m in sorted(history, key=lambda m: m.step)]
    assert float(next(r for r in rows if r.get("truth/rmse"))["truth/rmse"]) == pytest.approx(
        result.metrics["truth/rmse"])

    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    assert len(events.Scalars("train/loss")) == EPOCHS and events.Scalars("truth/rmse")
    assert len(events.Images("fit")) == 2  # one during training, one at the end
    assert sorted(result.run_dir.iterdir()) == sorted(result.run_dir / n for n in (
        ".hydra", "checkpoints", "csv", "fit.png", "metrics.json", "tensorboard", "train.log"))

def test_population_members_mlflow_runs_span_their_fit_and_lead_with_the_swept_keys(launch_dir):
    """hydra/launcher=vectorized logs its members after their one fit: each member's MLflow run starts
    when the fit started and lasts its fit_seconds (metrics.json), not the moment of writing it, and
    its name starts with the job's swept keys, in the sweep's order (seed before optimizer.lr)."""
    run_cli("-m", "hydra/launcher=vectorized", "logger=mlflow", "logger.experiment_name=population",
            "trainer.max_epochs=20", "callbacks.fit_plot.n_images=0", "seed=1,2", "optimizer.lr=0.01,0.03",
            "hydra.sweep.dir=population", cwd=launch_dir)
    mlflow, sweep_dir = client(launch_dir), launch_dir / "population"
    runs = mlflow.search_runs([mlflow.get_experiment_by_name("population").experiment_id])
    assert sorted(r.data.tags["hydrafit.job_num"] for r in runs) == ["0", "1", "2", "3"]
    assert len({(r.info.start_time, r.info.end_time) for r in runs}) == 1  # one fit
    planned = (sweep_dir / "multirun.yaml").stat().st_mtime * 1000  # Hydra writes it before any job
    for run in runs:
        job_dir = sweep_dir / run.data.tags["hydrafit.job_num"]
        seed, lr = [o for o in job_overrides(job_dir) if o.startswith(("seed=", "optimizer.lr="))]
        assert run.info.run_name.startswith(f"{run.data.tags['hydrafit.job_num']}: {seed},{lr},")
        seconds = (run.info.end_time - run.info.start_time) / 1000
        assert seconds == pytest.approx(read_metrics(job_dir)["fit_seconds"], abs=0.002)
        assert planned < run.info.start_time < run.info.end_time < (job_dir / "metrics.json").stat().st_mtime * 1000
        check_mlflow_run(mlflow, run, job_dir, 20)
