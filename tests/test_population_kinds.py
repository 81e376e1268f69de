"""What a population vectorises beyond seeds and optimizer values: the user's own data
(standardised, with a validation split), lr schedulers, gradient clipping, different
trainer.max_epochs, MLP widths and activations. Each sweep runs as one population (the launcher's
grouping line says so) and every member equals its job run alone with the basic launcher.

Run: .venv/bin/python -m pytest tests/test_population_kinds.py -q   (about 2 minutes on 2 cores)
"""
from __future__ import annotations

import csv

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import REPO, read_metrics, run_cli

QUIET = ["callbacks.fit_plot.n_images=0", "~callbacks.progress_bar", "callbacks.model_checkpoint.every_n_epochs=10"]
# 16 jobs a sweep: widths x activations x clipping x epochs, with a validation split; one sweep
# with scheduler=cosine, one with scheduler=step (whose step_size cosine lacks).
MIXED = ["model.hidden_dims=[8],[16]", "model.activation=relu,tanh", "trainer.gradient_clip_val=0.05,null",
         "trainer.max_epochs=20,30", "dataset.val_fraction=0.2"]
SCHEDULERS = {"cosine": ["scheduler=cosine"], "step": ["scheduler=step", "scheduler.step_size=7"]}
OWN_DATA = ["dataset=csv", f"dataset.path={REPO / 'examples' / 'data' / 'temperature.csv'}", "dataset.x=day",
            "dataset.y=temp_c", "seed=1,2", "optimizer.lr=0.01,0.03", "trainer.max_epochs=30"]


def close(a: float, b: float, rtol: float = 1e-5) -> bool:
    return abs(a - b) <= rtol * abs(b)


def rows(sweep_dir) -> list[dict]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def sweep(cwd, name: str, args: list[str], launcher: str) -> tuple:
    proc = run_cli("-m", f"hydra/launcher={launcher}", *args, *QUIET, f"hydra.sweep.dir={cwd / name}", cwd=cwd)
    return cwd / name, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("kinds")
    return cwd, {launcher: [sweep(cwd, f"{launcher}-{name}", [*scheduler, *MIXED], launcher)
                            for name, scheduler in SCHEDULERS.items()]
                 for launcher in ("vectorized", "basic")}


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("own_data")
    return cwd, {launcher: sweep(cwd, launcher, OWN_DATA, launcher) for launcher in ("vectorized", "basic")}


def same_runs(vec_dir, basic_dir, keys) -> int:
    """Every job of the vectorised sweep equals the basic launcher's job of the same overrides."""
    n = 0
    for job in sorted(p for p in vec_dir.iterdir() if p.name.isdigit()):
        twin = basic_dir / job.name
        assert (job / ".hydra" / "overrides.yaml").read_text() == (twin / ".hydra" / "overrides.yaml").read_text()
        mine, alone = read_metrics(job), read_metrics(twin)
        assert mine["status"] == alone["status"] == "completed" and mine["epochs"] == alone["epochs"], job
        for key in keys:
            assert close(mine[key], alone[key]), (job.name, key, mine[key], alone[key])
        n += 1
    assert n == len(rows(basic_dir))
    return n


def test_widths_activations_schedulers_clipping_and_epochs_are_one_population(mixed):
    cwd, runs = mixed
    for (vec_dir, log), (basic_dir, _) in zip(runs["vectorized"], runs["basic"]):
        assert "vectorized: 16 jobs -> 1 population of 16" in log, log[-3000:]
        assert same_runs(vec_dir, basic_dir, ("train/mse", "truth/rmse", "val/mse")) == 16


def test_a_member_checkpoint_is_its_own_shape_schedule_and_epochs(mixed):
    """Job #0 of the step-scheduled sweep ([8], relu, clipped, 20 epochs, finished before the
    population's 30): its checkpoint holds an [8]-wide net, the scheduler's state after 20
    epochs, and the progress of 20 epochs; hydrafit-eval reproduces its metrics; resume= to 40
    epochs equals the basic launcher's job resumed the same way."""
    cwd, runs = mixed
    job, twin = runs["vectorized"][1][0] / "0", runs["basic"][1][0] / "0"
    assert "model.hidden_dims=[8]" in (job / ".hydra" / "overrides.yaml").read_text()
    mine = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
    theirs = torch.load(twin / "checkpoints" / "last.ckpt", weights_only=True)
    assert {k: v.shape for k, v in mine["state_dict"].items()} == {k: v.shape for k, v in theirs["state_dict"].items()}
    assert mine["state_dict"]["net.0.weight"].shape == (8, 1)
    assert mine["lr_schedulers"] == theirs["lr_schedulers"] and mine["lr_schedulers"][0]["last_epoch"] == 20
    assert mine["optimizer_states"][0]["param_groups"][0]["lr"] == theirs["optimizer_states"][0]["param_groups"][0]["lr"]
    assert mine["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"] == 20
    run_cli(f"run={job}", script="hydrafit-eval", cwd=cwd)
    assert read_metrics(job / "eval" / "last")["truth/rmse"] == pytest.approx(read_metrics(job)["truth/rmse"], rel=1e-6)
    for run in (job, twin):
        run_cli(f"resume={run}", "trainer.max_epochs=40", cwd=cwd)
    mine, alone = read_metrics(job), read_metrics(twin)
    assert mine["status"] == alone["status"] == "completed" and mine["epochs"] == alone["epochs"] == 40
    for key in ("train/mse", "truth/rmse"):
        assert close(mine[key], alone[key]), (key, mine[key], alone[key])


def test_members_log_val_loss_every_epoch_as_a_single_run(mixed):
    cwd, runs = mixed
    curves = []
    for run in (runs["vectorized"][0][0] / "3", runs["basic"][0][0] / "3"):
        (events,) = (run / "tensorboard").iterdir()
        tb = EventAccumulator(str(events), size_guidance={"scalars": 0})
        tb.Reload()
        curves.append([(e.step, e.value) for e in tb.Scalars("val/loss")])
    (mine, alone) = curves
    assert [s for s, _ in mine] == [s for s, _ in alone] and len(mine) == read_metrics(run)["epochs"]
    assert all(close(a, b, 1e-4) for (_, a), (_, b) in zip(mine, alone))


def test_own_data_is_one_population_equal_to_its_single_runs(own_data):
    cwd, runs = own_data
    (vec_dir, log), (basic_dir, _) = runs["vectorized"], runs["basic"]
    assert "vectorized: 4 jobs -> 1 population of 4" in log and "runs alone" not in log
    assert same_runs(vec_dir, basic_dir, ("train/mse", "val/mse")) == 4
    from PIL import Image  # each member's fit.png, drawn on the population's shared axes

    assert Image.open(vec_dir / "0" / "fit.png").size == Image.open(basic_dir / "0" / "fit.png").size
    checkpoint = torch.load(vec_dir / "0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["scaling"] == torch.load(
        basic_dir / "0" / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["scaling"]


def test_widths_depths_and_activations_are_one_population_of_stacks(tmp_path):
    """Each architecture is a stack of its own in one fit, so its members compute exactly what
    their own nets compute: every member equals its single run bitwise."""
    grid = ["model.hidden_dims=[8],[16,8]", "model.activation=relu,sigmoid", "trainer.max_epochs=15", *QUIET]
    vec = run_cli("-m", "hydra/launcher=vectorized", *grid, f"hydra.sweep.dir={tmp_path / 'vec'}", cwd=tmp_path)
    assert "vectorized: 4 jobs -> 1 population of 4" in vec.stdout + vec.stderr
    run_cli("-m", *grid, f"hydra.sweep.dir={tmp_path / 'basic'}", cwd=tmp_path)
    for n in range(4):
        mine, alone = read_metrics(tmp_path / "vec" / str(n)), read_metrics(tmp_path / "basic" / str(n))
        assert (mine["train/mse"], mine["truth/rmse"]) == (alone["train/mse"], alone["truth/rmse"]), n


def test_members_validate_on_the_epochs_a_single_run_does(tmp_path):
    run_cli("-m", "hydra/launcher=vectorized", "seed=1,2", "dataset.val_fraction=0.2", "trainer.max_epochs=7",
            "+trainer.check_val_every_n_epoch=3", *QUIET, f"hydra.sweep.dir={tmp_path / 's'}", cwd=tmp_path)
    (events,) = (tmp_path / "s" / "1" / "tensorboard").iterdir()
    tb = EventAccumulator(str(events), size_guidance={"scalars": 0})
    tb.Reload()
    assert [e.step for e in tb.Scalars("val/loss")] == [2, 5]
    assert len(tb.Scalars("train/loss")) == 7
