"""val/loss: the validation split's MSE, computed by the model at each epoch's end
(models.Regressor.on_train_epoch_end) instead of Lightning's validation loop. Logged at every
epoch at train/loss's steps, equal to what the checkpoint's weights give on the split, seen by
the monitoring callbacks in the epoch it belongs to, and continued by a resumed run.

    .venv/bin/python -m pytest tests/test_validation.py -q -n 0     # ~1 min on 2 cores (6 CLI runs)
"""
from __future__ import annotations

import csv
import math

import pytest
import torch
from conftest import REPO, read_metrics, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hydrafit.models import load_regressor

TEMPERATURE = REPO / "examples" / "data" / "temperature.csv"
CSV = ("dataset=csv", f"dataset.path={TEMPERATURE}", "dataset.x=day", "dataset.y=temp_c",
       "callbacks.fit_plot.n_images=0")
EPOCHS = 30


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the run's TensorBoard files: [(step, value)] in order."""
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def val_mse(checkpoint, x_val: torch.Tensor, y_val: torch.Tensor) -> float:
    """The MSE on the validation rows of the model a checkpoint holds, recomputed here."""
    module, _ = load_regressor(checkpoint)
    with torch.no_grad():
        return torch.nn.functional.mse_loss(module(x_val), y_val).item()


def temperature_split(seed: int = 12345, val_fraction: float = 0.2):
    """(x_val, y_val) of the temperature example, drawn as PointsDataModule draws them: the
    first round(val_fraction * n) indexes of a randperm seeded with the run's seed, sorted."""
    with open(TEMPERATURE, newline="") as f:
        rows = [(float(r["day"]), float(r["temp_c"])) for r in csv.DictReader(f)]
    points = torch.tensor(rows, dtype=torch.float64).float()
    order = torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))
    val = order[:round(val_fraction * len(points))].sort().values
    return points[val, :1], points[val, 1:]


def assert_validated_every_epoch(tags: dict, epochs: int) -> None:
    """val/loss once an epoch, at the optimizer step train/loss is logged at, and nothing else
    per epoch (no "epoch" scalar)."""
    steps = [step for step, _ in tags["val/loss"]]
    assert len(steps) == epochs
    assert steps == [step for step, _ in tags["train/loss"]]
    assert set(tags) <= {"train/loss", "val/loss", "train/mse", "val/mse", "truth/rmse",
                         "baseline/truth_rmse"}, set(tags)


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("csv")
    run_cli(*CSV, f"trainer.max_epochs={EPOCHS}", f"hydra.run.dir={cwd / 'run'}", cwd=cwd)
    return cwd / "run"


def test_csv_run_logs_val_loss_every_epoch_as_the_checkpoint_computes_it(csv_run):
    tags = scalars(csv_run)
    assert_validated_every_epoch(tags, EPOCHS)
    assert [step for step, _ in tags["val/loss"]] == list(range(EPOCHS))  # full batch: a step an epoch
    recomputed = val_mse(csv_run / "checkpoints" / "last.ckpt", *temperature_split())
    assert tags["val/loss"][-1][1] == pytest.approx(recomputed, rel=1e-6)
    assert read_metrics(csv_run)["val/mse"] == pytest.approx(recomputed, rel=1e-6)  # the same split


def test_resumed_run_continues_val_loss_as_if_uninterrupted(tmp_path, csv_run):
    run = tmp_path / "run"
    run_cli(*CSV, f"trainer.max_epochs={EPOCHS - 10}", f"hydra.run.dir={run}", cwd=tmp_path)
    assert len(scalars(run)["val/loss"]) == EPOCHS - 10
    run_cli(f"resume={run}", f"trainer.max_epochs={EPOCHS}", cwd=tmp_path)
    resumed, uninterrupted = scalars(run)["val/loss"], scalars(csv_run)["val/loss"]
    assert [step for step, _ in resumed] == [step for step, _ in uninterrupted]
    assert [value for _, value in resumed] == pytest.approx([value for _, value in uninterrupted], rel=1e-6)


def test_default_run_with_a_split_feeds_val_loss_to_monitoring_callbacks(tmp_path):
    """EarlyStopping and ModelCheckpoint on val/loss, as a user adds them: both run after the
    model's on_train_epoch_end, so each epoch they see that epoch's val/loss. The run stops
    where EarlyStopping's rule over the logged values says, and best.ckpt holds the weights of
    the lowest logged value."""
    run, patience, max_epochs = tmp_path / "run", 3, 100
    run_cli("dataset.val_fraction=0.2", f"trainer.max_epochs={max_epochs}", "callbacks.fit_plot.n_images=0",
            "+callbacks.early_stopping._target_=pytorch_lightning.callbacks.EarlyStopping",
            "+callbacks.early_stopping.monitor=val/loss", f"+callbacks.early_stopping.patience={patience}",
            "callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.every_n_epochs=1",
            f"hydra.run.dir={run}", cwd=tmp_path)
    metrics, tags = read_metrics(run), scalars(run)
    values = [value for _, value in tags["val/loss"]]
    best, wait, stop = math.inf, 0, None  # EarlyStopping(mode="min", min_delta=0)'s rule
    for epoch, value in enumerate(values):
        best, wait = (value, 0) if value < best else (best, wait + 1)
        if wait >= patience:
            stop = epoch
            break
    assert stop is not None and stop + 1 < max_epochs  # it stopped early, on val/loss
    assert metrics["status"] == "completed" and metrics["epochs"] == stop + 1
    assert_validated_every_epoch(tags, stop + 1)

    from hydrafit.data import load_dataset
    from hydrafit.rundir.records import recorded_config

    cfg = recorded_config(run)
    datamodule = load_dataset(cfg.dataset, cfg.seed)  # the run's split, from its seed
    split = datamodule.x_val, datamodule.y_val
    assert len(split[0]) == round(0.2 * 128)
    assert values[-1] == pytest.approx(val_mse(run / "checkpoints" / "last.ckpt", *split), rel=1e-6)
    assert metrics["val/mse"] == pytest.approx(values[-1], rel=1e-6)
    best_ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert best_ckpt["epoch"] == values.index(min(values))  # saved during that epoch's end
    assert val_mse(run / "checkpoints" / "best.ckpt", *split) == pytest.approx(min(values), rel=1e-6)


def test_two_rank_ddp_validates_on_each_rank_without_a_collective(tmp_path):
    """Every rank holds the whole split, so val/loss is the same everywhere; rank 0 logs it."""
    run, epochs = tmp_path / "run", 20
    run_cli("trainer=ddp_cpu", *CSV, f"trainer.max_epochs={epochs}", f"hydra.run.dir={run}",
            cwd=tmp_path, timeout=300)
    tags = scalars(run)
    assert_validated_every_epoch(tags, epochs)
    recomputed = val_mse(run / "checkpoints" / "last.ckpt", *temperature_split())
    assert tags["val/loss"][-1][1] == pytest.approx(recomputed, rel=1e-6)


def test_check_val_every_n_epoch_validates_on_those_epochs_only(tmp_path):
    from hydrafit.config.compose import compose_job
    from hydrafit.engine.single import build

    overrides = ["dataset.val_fraction=0.2", "trainer.max_epochs=7", "+trainer.check_val_every_n_epoch=3",
                 "callbacks=none", "logger=csv"]
    datamodule, module, trainer = build(compose_job(overrides, tmp_path / "run"))
    trainer.fit(module, datamodule=datamodule)
    with open(f"{trainer.logger.log_dir}/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows if r["train/loss"]] == list(range(7))
    assert [int(r["step"]) for r in rows if r["val/loss"]] == [2, 5]  # epochs 3 and 6
    assert float(trainer.callback_metrics["val/loss"]) == float(rows[5]["val/loss"])


def test_optuna_pruning_reports_this_epochs_val_loss(tmp_path):
    """OptunaPruning's hook runs before the model's on_train_epoch_end (it is no monitoring
    callback), when callback_metrics still holds the previous epoch's val/loss: it reports what
    the model is about to log for this epoch."""
    import pytorch_lightning as pl

    from hydrafit.config.compose import compose_job
    from hydrafit.engine.single import build
    from hydrafit.sweeps.pruning import OptunaPruning

    pruning, reported = OptunaPruning("val/loss", every_n_epochs=1), []

    class Reporter(pl.Callback):  # what OptunaPruning would send to the trial, at its place
        def on_train_epoch_end(self, trainer, pl_module):
            reported.append(pruning._value(trainer, pl_module))

    overrides = ["dataset.val_fraction=0.2", "trainer.max_epochs=4", "callbacks=none", "logger=csv"]
    datamodule, module, trainer = build(compose_job(overrides, tmp_path / "run"))
    trainer.callbacks.insert(0, Reporter())
    trainer.fit(module, datamodule=datamodule)
    with open(f"{trainer.logger.log_dir}/metrics.csv") as f:
        logged = [float(r["val/loss"]) for r in csv.DictReader(f) if r["val/loss"]]
    assert len(logged) == 4 and reported == pytest.approx(logged, rel=1e-6)
