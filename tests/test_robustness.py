"""Bad input, divergence, interruption, resume and determinism, through the CLI."""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

import hydrafit
from conftest import BIN, read_metrics, run_cli

NUMBERS = ("train/mse", "truth/rmse", "baseline/truth_rmse")
# Long enough to interrupt; mini-batches and a scheduler, so that a resumed run must also get
# each epoch's shuffle and learning rate right to equal an uninterrupted one bitwise.
EPOCHS = 1000
LONG = (f"trainer.max_epochs={EPOCHS}", "callbacks.fit_plot.n_images=2", "dataset.batch_size=32",
        "scheduler=step", "scheduler.step_size=500")


def one_line_error(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hydrafit-train: error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


BAD_VALUES = [
    ("+model.hiden=3", "model.hiden: unknown key; did you mean 'hidden_dims'?"),
    ("optimizer.lr=abc", "optimizer.lr must be a number, got 'abc'"),
    ("model.hidden_dims=abc", "model.hidden_dims must be a non-empty list of integers >= 1"),
    ("optimizer.lr=-1", "optimizer.lr must be > 0"),
    ("optimizer.lr=0", "optimizer.lr must be > 0"),
    ("model.hidden_dims=[0]", "model.hidden_dims must be a non-empty list of integers >= 1"),
    ("model.hidden_dims=[]", "model.hidden_dims must be a non-empty list of integers >= 1"),
    ("model.activation=foo", "model.activation: 'foo' is not one of relu, tanh, gelu, silu, sigmoid"),
    ("dataset.n_points=0", "dataset.n_points must be >= 2"),
    ("dataset.n_points=1", "dataset.n_points must be >= 2"),
    ("dataset.noise_std=-0.1", "dataset.noise_std must be >= 0"),
    ("dataset.x_range=[2,-2]", "dataset.x_range must be [low, high] numbers with low < high"),
    ("dataset.batch_size=0", "dataset.batch_size must be >= 1"),
    ("dataset.val_fraction=1.5", "dataset.val_fraction must be <= 1"),
    ("trainer.max_epochs=0", "trainer.max_epochs must be >= 1"),
    ("+foo=bar", "foo: unknown key; allowed: callbacks, dataset"),
    ("optimizer._target_=os.system", "optimizer._target_: 'os.system' is not allowed"),
    ("model._target_=subprocess.run", "model._target_: 'subprocess.run' is not allowed"),
    ("+callbacks.evil._target_=builtins.eval", "callbacks.evil._target_: 'builtins.eval' is not allowed"),
    ("hydra.run.dir=/proc/hydrafit-cannot-write", "hydra.run.dir: cannot write to '/proc/hydrafit-cannot-write'"),
]


@pytest.mark.parametrize("override,message", BAD_VALUES[:-1], ids=[o for o, _ in BAD_VALUES[:-1]])
def test_bad_value_is_refused_by_validation(tmp_path, override, message):
    """Every row of the table, in-process (fast); the CLI path is exercised below."""
    from hydrafit.config.errors import ConfigError
    from hydrafit.config.validate import validate
    from test_configs import compose_run

    with pytest.raises(ConfigError) as error:
        validate(compose_run(tmp_path, override))
    assert str(error.value).startswith(message)


CLI_CASES = [BAD_VALUES[i] for i in (0, 1, 3, 7, 15, 16, 19)]


@pytest.mark.parametrize("override,message", CLI_CASES, ids=[o for o, _ in CLI_CASES])
def test_bad_value_is_one_line_and_exit_2_from_the_cli(tmp_path, override, message):
    run = tmp_path / "run"
    args = (override,) if override.startswith("hydra.run.dir") else (override, f"hydra.run.dir={run}")
    proc = run_cli(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert one_line_error(proc).startswith(f"hydrafit-train: error: {message}")
    if not override.startswith("hydra.run.dir"):  # Hydra made the run dir: nothing beyond its own record
        assert {p.name for p in run.iterdir()} <= {".hydra", "train.log"}


@pytest.mark.parametrize("override,message", [
    ("model.hiden=3", "model.hiden: unknown key; did you mean 'hidden_dims'?"),  # Hydra's struct mode
    ("model=transformer", "model=transformer: no such option; available: mlp, polynomial"),
    ("trainer.max_epoch=3", "trainer.max_epoch: unknown key; did you mean 'max_epochs'?"),
])
def test_what_hydra_cannot_compose_is_one_line_too(tmp_path, override, message):
    proc = run_cli(override, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and one_line_error(proc) == f"hydrafit-train: error: {message}"
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("args,message", [
    (["model.hiden=3,4"], "model.hiden: unknown key; did you mean 'hidden_dims'?"),
    (["hydra/launcher=vectorised", "seed=1,2"], "hydra/launcher=vectorised: no such option; available: basic, joblib"),
    (["optimizer.lr=0.1,0.2", "model=mlp,transformer"], "model=transformer: no such option; available: mlp, polynomial"),
    (["optimizer.lr=0.1,,0.2"], "optimizer.lr=0.1,,0.2: cannot parse (extraneous input ','); a sweep is"),
    (["seed=range(a)"], "seed=range(a): cannot parse (TypeError while evaluating 'range(a)'"),
])
def test_bad_input_to_a_sweep_is_one_line_and_creates_no_sweep_dir(tmp_path, args, message):
    proc = run_cli("-m", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and one_line_error(proc).startswith(f"hydrafit-train: error: {message}")
    assert not (tmp_path / "outputs").exists()


def test_sweep_check_composes_each_option_of_a_swept_group_not_each_value(monkeypatch):
    """seed=range(1,61) is 60 values of one config, not 60 configs: the check before a sweep
    composes the first job and the other options of swept groups only (it composed every value,
    ~15 s before a 480-job sweep started)."""
    from hydrafit.cli.plugins import register_plugins
    from hydrafit.config import preflight

    register_plugins()  # as hydrafit-train does: hydra/sweeper=resumable
    composed = []
    real = preflight.composed
    monkeypatch.setattr(preflight, "composed", lambda overrides: composed.append(overrides) or real(overrides))
    assert preflight.sweep_problem(["seed=range(1,61)", "optimizer.lr=0.1,0.2", "model=mlp,polynomial"]) is None
    assert composed == [["seed=1", "optimizer.lr=0.1", "model=mlp"], ["seed=1", "optimizer.lr=0.1", "model=polynomial"]]


def test_flags_other_than_multirun_still_reach_hydra(tmp_path):
    proc = run_cli("--cfg", "job", "optimizer.lr=0.3", cwd=tmp_path)
    assert "lr: 0.3" in proc.stdout and not (tmp_path / "outputs").exists()


def test_target_injected_by_an_experiment_file_is_refused_before_instantiation(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "evil.yaml").write_text(
        "# @package _global_\nmodel:\n  _target_: subprocess.run\n"
        f"  args: [touch, {marker}]\n")
    proc = run_cli("--config-dir", str(tmp_path / "conf"), "experiment=evil", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and not marker.exists()
    assert "model._target_: 'subprocess.run' is not allowed" in one_line_error(proc)


def test_divergence_stops_records_and_keeps_last_finite_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("optimizer=sgd", "optimizer.lr=100", "callbacks.model_checkpoint.every_n_epochs=1",
                   f"hydra.run.dir={run}", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "diverged" in proc.stderr and "try a lower learning rate, e.g. optimizer.lr=10" in proc.stderr
    metrics = read_metrics(run)
    assert metrics["status"] == "diverged" and metrics["epochs"] < 10  # stopped at once, not at 250
    assert "optimizer.lr=10" in metrics["error"] and "truth/rmse" not in metrics
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values())
    assert ckpt["epoch"] < metrics["epochs"]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The reference, in-process (the API's runs equal the CLI's bitwise: tests/test_api.py)."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    return hydrafit.fit(LONG, run_dir=cwd / "run").metrics


def start_and_signal(run: Path, cwd: Path, signum: int) -> subprocess.Popen:
    """Start a long run, wait until it is training, send `signum`, wait for the exit."""
    proc = subprocess.Popen([str(BIN / "hydrafit-train"), *LONG, f"hydra.run.dir={run}"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "checkpoints" / "last.ckpt").exists():
        time.sleep(0.05)  # the first periodic checkpoint: training is under way
    proc.send_signal(signum)
    proc.wait(timeout=120)
    return proc


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_gracefully_and_resume_equals_uninterrupted(tmp_path, uninterrupted, signum):
    run = tmp_path / "run"
    proc = start_and_signal(run, tmp_path, signum)
    stopped = read_metrics(run)
    assert proc.returncode == 130, (stopped, proc.stderr[-3000:])
    assert stopped["status"] == "interrupted" and 0 < stopped["epochs"] < EPOCHS, stopped
    assert f"resume={run}" in stopped["error"]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == stopped["epochs"]  # saved at the epoch it stopped

    run_cli(f"resume={run}", cwd=tmp_path)
    resumed = read_metrics(run)
    assert resumed["status"] == "completed" and resumed["epochs"] == EPOCHS
    assert {k: resumed[k] for k in NUMBERS} == {k: uninterrupted[k] for k in NUMBERS}  # bitwise
    assert (run / ".hydra" / "config.yaml").read_text().count(f"max_epochs: {EPOCHS}") == 1  # original kept
    assert len(list((run / ".hydra").glob("resume_*"))) == 1


def test_kill_9_leaves_complete_files_and_resume_continues(tmp_path, uninterrupted):
    run = tmp_path / "run"
    start_and_signal(run, tmp_path, signal.SIGKILL)
    for path in run.rglob("*"):
        assert not path.name.endswith((".tmp", ".tmp.png")) or path.name.startswith("."), path
    assert json.loads((run / "metrics.json").read_text())["status"] == "running"
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        torch.load(ckpt, weights_only=True)  # complete: written to a temp file, then renamed
    run_cli(f"resume={run}", cwd=tmp_path)
    resumed = read_metrics(run)
    assert {k: resumed[k] for k in NUMBERS} == {k: uninterrupted[k] for k in NUMBERS}


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not_a_checkpoint", "missing"])
def test_resume_from_a_bad_checkpoint_is_refused_and_writes_nothing(tmp_path, default_run, damage):
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(default_run), str(run)], check=True)
    ckpt = run / "checkpoints" / "last.ckpt"
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:2000])
    elif damage == "garbage":
        ckpt.write_bytes(os.urandom(4000))
    elif damage == "not_a_checkpoint":
        torch.save({"hello": torch.zeros(2)}, ckpt)
    else:
        ckpt.unlink()
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*") if p.is_file()}
    proc = run_cli(f"resume={run}", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert one_line_error(proc).startswith("hydrafit-train: error: resume: ")
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*")
             if p.is_file() and "resume_" not in str(p.relative_to(run)) and p.name != "train.log"}
    assert after == {p: h for p, h in before.items() if p.name != "train.log"}


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path):
    proc = run_cli(f"resume={tmp_path / 'nope'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "is not a hydrafit run directory" in one_line_error(proc)
    assert not (tmp_path / "nope").exists()


def test_same_seed_is_bitwise_repeatable_and_another_seed_is_not(tmp_path, default_run):
    a, b = tmp_path / "a", tmp_path / "b"
    run_cli("seed=7", "callbacks.fit_plot.n_images=0", f"hydra.run.dir={a}", cwd=tmp_path)
    hydrafit.fit(["seed=7", "callbacks.fit_plot.n_images=0"], run_dir=b)  # another process: in-process
    ma, mb, m0 = read_metrics(a), read_metrics(b), read_metrics(default_run)
    assert {k: ma[k] for k in NUMBERS} == {k: mb[k] for k in NUMBERS}
    assert all(ma[k] != m0[k] for k in NUMBERS)  # other noise (baseline moves) and other init
    assert all(math.isfinite(ma[k]) for k in NUMBERS)
