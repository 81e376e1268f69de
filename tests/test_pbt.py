"""hparams_search=pbt: population-based training inside one vectorised fit (hydrafit.sweeps.pbt,
hydrafit.engine.pbt, hydrafit.report.lineage), run as a user runs it, and its pieces by hand."""
from __future__ import annotations

import csv
import math
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import BIN, read_metrics, run_cli

pytest.importorskip("optuna")  # the search-space grammar's distributions (the sweeps extra)

from optuna.distributions import CategoricalDistribution, FloatDistribution  # noqa: E402

from hydrafit.sweeps.pbt import Policy, perturbed  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs" / "pbt.md"
# The page's commands, as the tests below run them (shortened, or with a real directory)
DOC_COMMANDS = [
    "hydrafit-train -m hparams_search=pbt",
    "hydrafit-train -m hparams_search=pbt hydra.sweeper.population=32 hydra.sweeper.perturbation_interval=10",
    "hydrafit-train pbt_replay=outputs/multiruns/<date>_<time>/7",
    "hydrafit-train -m resume_sweep=outputs/multiruns/<date>_<time>",
]
# The page's second command with 6 members, 4 intervals of 100 epochs: long enough to stop in the middle of
PBT = [*DOC_COMMANDS[1].split()[1:], "hydra.sweeper.population=6", "trainer.max_epochs=500",
       "hydra.sweeper.perturbation_interval=100"]


def policy_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "pbt_policy.csv") as f:
        return list(csv.DictReader(f))


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = next((run_dir / "tensorboard").rglob("events.out.tfevents*")).parent  # named by the job's overrides
    events = EventAccumulator(str(run), size_guidance={"scalars": 0}).Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.fixture(scope="module")
def pbt_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("pbt")
    run_cli(*PBT, f"hydra.sweep.dir={cwd / 'sweep'}", cwd=cwd)
    return cwd, cwd / "sweep"


def test_pairs_take_the_bottom_quantile_to_the_top_and_diverged_members_rank_last():
    policy = Policy(space={}, population=8, quantile_fraction=0.25, seed=3)
    scores = [5.0, 1.0, 3.0, math.nan, 2.0, 4.0, 0.5, 6.0]
    pairs = policy.pairs(scores, epoch=10)
    assert [member for member, _ in pairs] == [3, 7]  # nan and 6.0: the bottom two
    assert {source for _, source in pairs} <= {6, 1}  # 0.5 and 1.0: the top two
    assert pairs == policy.pairs(scores, epoch=10)  # a function of seed and epoch: a resume redraws it
    assert Policy(space={}, population=2, quantile_fraction=0.25).pairs([1.0, 2.0], 5) == [(1, 0)]


def test_explore_multiplies_by_a_factor_within_bounds_and_moves_choices_to_a_neighbour():
    rng = __import__("numpy").random.default_rng(0)
    lr = FloatDistribution(1e-4, 1.0, log=True)
    assert {round(perturbed(lr, 0.01, (1.2, 0.8), rng), 12) for _ in range(40)} == {0.012, 0.008}
    assert perturbed(lr, 0.9, (1.2,), rng) == 1.0 and perturbed(lr, 1e-4, (0.8,), rng) == 1e-4
    act = CategoricalDistribution(["relu", "tanh", "gelu"])
    assert perturbed(act, "tanh", (1.2,), rng) == "gelu" and perturbed(act, "relu", (0.8,), rng) == "relu"
    policy = Policy(space={"optimizer.lr": lr}, resample_probability=0.0, perturbation_factors=(2.0,), seed=1)
    assert policy.explore({"optimizer.lr": 0.01}, 10, 0) == {"optimizer.lr": 0.02}


def test_exploit_copies_weights_and_optimizer_state_and_sets_the_new_values():
    """A tiny population trained 3 epochs, then member 2 copies member 0 by hand: its weights,
    Adam moments and lr are member 0's (and the new lr), members 0, 1 and 3 are untouched."""
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_module

    from hydrafit.config import plugins, resolvers  # noqa: F401
    from hydrafit.engine.pbt import copy_member
    from hydrafit.engine.population import Member, Population
    from hydrafit.engine.single import build_model

    with initialize_config_module("hydrafit.conf", version_base="1.3"):
        cfgs = [compose("train", [f"optimizer.lr={lr}", "trainer.max_epochs=3"]) for lr in (0.01, 0.02, 0.03, 0.04)]
    members = [Member(cfg, *build_model(cfg, announce=False)) for cfg in cfgs]
    population = Population(members)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(population)
    optimizer = population.optimizers().optimizer
    before = [t.detach().clone() for t in population.stacked]
    moments = {p: {k: v.clone() for k, v in optimizer.state[p].items()} for p in population.stacked}
    assert not torch.equal(before[0][2], before[0][0])  # different lrs: different weights
    copy_member(population, 0, 2, {"lr": 0.5})
    for p, old in zip(population.stacked, before):
        assert torch.equal(p[2], old[0])
        for k in (0, 1, 3):
            assert torch.equal(p[k], old[k])
        for name, value in moments[p].items():
            assert torch.equal(optimizer.state[p][name][2], value[0]), name
            assert torch.equal(optimizer.state[p][name][1], value[1]), name
    assert optimizer.h["lr"].tolist() == [0.01, 0.02, 0.5, 0.04]
    assert optimizer.h["-lr"].tolist() == [-0.01, -0.02, -0.5, -0.04]


def test_pbt_preset_writes_lineage_and_complete_member_dirs(pbt_run):
    cwd, sweep = pbt_run
    rows = policy_rows(sweep)
    # 4 intervals (after 100, 200, 300, 400 epochs; not after the last), 2 of 6 members copy each time
    assert [int(r["epoch"]) for r in rows] == [100] * 2 + [200] * 2 + [300] * 2 + [400] * 2
    for r in rows:
        assert r["member"] != r["copied_from"] and float(r["copied_score"]) <= float(r["score"])
        old, new = float(r["old optimizer.lr"]), float(r["new optimizer.lr"])
        assert 1e-4 <= new <= 1 and old > 0
    assert (sweep / "pbt_lineage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (sweep / "pbt_population.ckpt").exists()  # a completed run leaves nothing to continue
    for n in range(6):
        run_dir = sweep / str(n)
        assert read_metrics(run_dir)["status"] == "completed"
        assert (run_dir / "fit.png").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
        schedule = yaml.safe_load((run_dir / "pbt_schedule.yaml").read_text())
        lr = scalars(run_dir, "pbt/optimizer.lr")
        assert len(lr) == 500 and len(scalars(run_dir, "train/loss")) == 500
        # the staircase: the lr of each epoch is the schedule's value from its epoch on
        for epoch, (_, value) in enumerate(lr):
            segment = [s for s in schedule["schedule"] if s["from_epoch"] <= epoch][-1]
            assert value == pytest.approx(segment["optimizer.lr"], rel=1e-6)
        copies = [r for r in rows if int(r["member"]) == n]
        assert [s["from_epoch"] for s in schedule["schedule"][1:]] == [int(r["epoch"]) for r in copies]
    summary = (sweep / "summary.csv").read_text().splitlines()
    assert len(summary) == 7


def test_replay_of_the_best_member_reproduces_it(pbt_run):
    cwd, sweep = pbt_run
    best = min(range(6), key=lambda n: read_metrics(sweep / str(n))["truth/rmse"])
    lineage = yaml.safe_load((sweep / str(best) / "pbt_schedule.yaml").read_text())["lineage"]
    run_cli(f"pbt_replay={sweep / str(best)}", f"hydra.run.dir={cwd / 'replay'}", cwd=cwd)
    member, replay = read_metrics(sweep / str(best)), read_metrics(cwd / "replay")
    for key in ("train/mse", "truth/rmse"):
        assert replay[key] == pytest.approx(member[key], rel=1e-5, abs=0), key
    lr = scalars(cwd / "replay", "pbt/optimizer.lr")
    for epoch, (_, value) in enumerate(lr):
        segment = [s for s in lineage if s["from_epoch"] <= epoch][-1]
        assert value == pytest.approx(segment["optimizer.lr"], rel=1e-6)


def stopped_and_resumed(tmp_path: Path, sig: int) -> Path:
    """The PBT command, stopped by `sig` once it saved its population, then resume_sweep=."""
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([str(BIN / "hydrafit-train"), *PBT, f"hydra.sweep.dir={sweep}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (sweep / "pbt_population.ckpt").exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode != 0, stderr[-3000:]
    resumed = run_cli("-m", f"resume_sweep={sweep}", cwd=tmp_path)
    assert "continues from its last saved interval" in resumed.stderr + resumed.stdout
    return sweep


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_a_stopped_pbt_run_resumes_to_what_the_uninterrupted_one_gives(pbt_run, tmp_path, sig):
    _, uninterrupted = pbt_run
    sweep = stopped_and_resumed(tmp_path, sig)
    assert policy_rows(sweep) == policy_rows(uninterrupted)
    for n in range(6):
        got, want = read_metrics(sweep / str(n)), read_metrics(uninterrupted / str(n))
        assert got["status"] == "completed"
        assert got["train/mse"] == want["train/mse"] and got["truth/rmse"] == want["truth/rmse"]
        assert len(scalars(sweep / str(n), "train/loss")) == 500  # every epoch, once
    assert not (sweep / "pbt_population.ckpt").exists()


@pytest.mark.parametrize("args, message", [
    (["hydra.sweeper.population=1"], "hydra.sweeper.population must be an integer >= 2"),
    (["model.activation=choice(relu,tanh)"], "'model.activation' cannot change during a fit"),
    (["hydra/launcher=basic"], "hydra/launcher must be vectorized"),
    (["optimizer=lbfgs"], "cannot join it: optimizer torch.optim.LBFGS is not vectorised"),
    (["scheduler=step"], "scheduler"),
])
def test_bad_pbt_settings_are_refused_in_one_line(tmp_path, args, message):
    proc = run_cli("-m", "hparams_search=pbt", "trainer.max_epochs=5", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_replay_refuses_a_dir_that_is_not_a_pbt_member(tmp_path):
    proc = run_cli(f"pbt_replay={tmp_path}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "pbt_replay:" in proc.stderr and "Traceback" not in proc.stderr


def test_docs_commands_are_the_ones_tested():
    import re

    blocks = re.findall(r"```bash\n(.*?)```", DOCS.read_text(), re.S)
    assert [line.strip() for block in blocks for line in block.splitlines() if line.strip()] == DOC_COMMANDS


def test_the_first_docs_command_runs_the_preset_as_shipped(tmp_path):
    """The preset's defaults (16 members, lr in [1e-4, 1], an interval of 25), shortened to 50 epochs."""
    run_cli(*DOC_COMMANDS[0].split()[1:], "trainer.max_epochs=50", f"hydra.sweep.dir={tmp_path / 's'}",
            "logger=none", "callbacks.fit_plot.n_images=0", cwd=tmp_path)
    rows = policy_rows(tmp_path / "s")
    assert [int(r["epoch"]) for r in rows] == [25] * 4  # ceil(16 * 0.25) members copy, once
    assert len(list((tmp_path / "s").glob("[0-9]*/pbt_schedule.yaml"))) == 16


def test_pbt_on_own_data_ranks_by_val_mse_and_replays(tmp_path):
    csv_file = Path(__file__).resolve().parents[1] / "examples" / "data" / "temperature.csv"
    own = ["dataset=csv", f"dataset.path={csv_file}", "dataset.x=day", "dataset.y=temp_c", "optimized_metric=val/mse"]
    run_cli("-m", "hparams_search=pbt", "hydra.sweeper.population=4", "trainer.max_epochs=40",
            "hydra.sweeper.perturbation_interval=10", *own, f"hydra.sweep.dir={tmp_path / 's'}", cwd=tmp_path)
    rows = policy_rows(tmp_path / "s")
    assert [int(r["epoch"]) for r in rows] == [10, 20, 30]
    copied = tmp_path / "s" / rows[-1]["member"]
    run_cli(f"pbt_replay={copied}", f"hydra.run.dir={tmp_path / 'replay'}", cwd=tmp_path)
    assert read_metrics(tmp_path / "replay")["val/mse"] == read_metrics(copied)["val/mse"]
