"""Several optimizer steps per Lightning batch (dataset.steps_per_batch): the same training,
bitwise, with fewer of Lightning's per-batch calls; Lightning takes the steps itself where a
Trainer flag needs its automatic optimization."""
from __future__ import annotations

import csv

import pytest
import torch

from hydrafit.data import TensorBatches
from hydrafit.metrics import final_metrics
from hydrafit.config.compose import compose_job
from hydrafit.engine.single import build

# 640 points in mini-batches of 32: 20 steps an epoch; callbacks and logger off for speed.
MINI = ("dataset.n_points=640", "dataset.batch_size=32", "trainer.max_epochs=3",
        "callbacks=none", "logger=none")


def fit(tmp_path, *overrides: str):
    """Build and fit the run of `overrides` in-process: (its final metrics, module, trainer)."""
    datamodule, module, trainer = build(compose_job([*MINI, *overrides], tmp_path / "run"))
    trainer.fit(module, datamodule=datamodule)
    return final_metrics(module.net, datamodule), module, trainer


@pytest.mark.parametrize("steps_per_batch", [1, 3, 100])
def test_groups_hold_the_same_mini_batches_in_the_same_order(steps_per_batch):
    x = torch.arange(50.0).unsqueeze(1)
    single = [b for steps in TensorBatches(x, -x, 7, seed=3) for b in steps]
    batches = TensorBatches(x, -x, 7, seed=3, steps_per_batch=steps_per_batch)
    groups = list(batches)
    grouped = [b for steps in groups for b in steps]
    assert len(groups) == len(batches) == -(-8 // steps_per_batch)  # 8 steps: 7 x 7 + 1
    assert all(len(steps) <= steps_per_batch for steps in groups)
    assert len(grouped) == len(single) == 8
    for (xg, yg), (xs, ys) in zip(grouped, single):
        assert torch.equal(xg, xs) and torch.equal(yg, ys)
    assert sorted(torch.cat([xb for xb, _ in grouped]).ravel().tolist()) == x.ravel().tolist()


def test_grouped_steps_train_bitwise_like_one_step_per_batch(tmp_path):
    one, _, one_trainer = fit(tmp_path / "one", "dataset.steps_per_batch=1")
    grouped, module, trainer = fit(tmp_path / "grouped", "dataset.steps_per_batch=8")
    assert not module.automatic_optimization
    assert (one_trainer.num_training_batches, trainer.num_training_batches) == (20, 3)  # 8 + 8 + 4
    assert one_trainer.global_step == trainer.global_step == 60  # optimizer steps, not batches
    assert grouped == one  # every metric, to the last bit


def test_gradient_clipping_falls_back_to_lightnings_own_steps(tmp_path):
    sgd = ("optimizer=sgd", "optimizer.lr=0.1")  # SGD's step, unlike Adam's, scales with the gradient
    clipped, module, trainer = fit(tmp_path / "clipped", *sgd, "trainer.gradient_clip_val=1e-4")
    assert module.automatic_optimization and trainer.num_training_batches == 20
    assert trainer.global_step == 60
    assert clipped["train/mse"] > 2 * fit(tmp_path / "free", *sgd)[0]["train/mse"]  # it clipped


def test_max_steps_stops_inside_a_group(tmp_path):
    _, _, trainer = fit(tmp_path, "dataset.steps_per_batch=8", "+trainer.max_steps=5")
    assert trainer.global_step == 5


def test_scheduler_steps_once_an_epoch_when_hydrafit_takes_the_steps(tmp_path):
    _, module, trainer = fit(tmp_path, "scheduler=step", "scheduler.step_size=1", "scheduler.gamma=0.5")
    assert not module.automatic_optimization
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.03 / 2**3)


def test_double_precision_reaches_grouped_mini_batches(tmp_path):
    metrics, module, _ = fit(tmp_path, "trainer.precision=64-true", "dataset.steps_per_batch=8")
    assert next(module.net.parameters()).dtype == torch.float64 and metrics["train/mse"] < 1


def test_val_loss_shares_train_losss_x_axis_of_optimizer_steps(tmp_path):
    _, _, trainer = fit(tmp_path, "dataset.val_fraction=0.25", "logger=csv", "dataset.steps_per_batch=8")
    with open(f"{trainer.logger.log_dir}/metrics.csv") as f:
        rows = list(csv.DictReader(f))
    steps = {name: [int(r["step"]) for r in rows if r[name]] for name in ("train/loss", "val/loss")}
    assert steps["train/loss"] == steps["val/loss"] == [14, 29, 44]  # 480 points: 15 steps an epoch
    assert all(r["train/loss"] and r["val/loss"] for r in rows)  # one row a step, both in it
    assert "epoch" not in rows[0]  # Lightning adds it only to what self.log logs
