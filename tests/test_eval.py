"""hydrafit-eval as a user runs it, and the README's "Your own data" walk-through, run as written.

    .venv/bin/python -m pytest tests/test_eval.py -q      # ~40 s on 2 cores
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO, read_metrics, run_cli

FAST = ("callbacks.fit_plot.n_images=0", "logger=none")  # what the README numbers do not depend on
# The README example's numbers on this project's 2-core x86_64 machine: 2 % across CPUs, as the
# core's golden numbers; bitwise equal on one machine.
GOLDEN = {"train/mse": 3.47383, "val/mse": 4.33396}
# examples/data/temperature.csv was drawn from this curve plus N(0, 1.8^2) noise.
TRUE_TEMPERATURE = lambda day: 8.5 - 9.5 * torch.cos(2 * math.pi * (day - 18) / 365)  # noqa: E731
TRUTH_TOLERANCE = 0.6  # °C RMS over days 1..365, a third of the noise std (measured: 0.345)


def readme_commands() -> list[str]:
    """The command lines of the ```bash block of docs/own-data.md's "## Walk-through" section."""
    text = (REPO / "docs" / "own-data.md").read_text()
    section = re.search(r"^## Walk-through\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, "docs/own-data.md has no section '## Walk-through'"
    block = re.search(r"```bash\n(.*?)```", section.group(1), re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory) -> Path:
    """A launch directory (a copy of the repository's examples/) in which the README's CSV
    training command has run, with the figures and logger it does not need turned off."""
    launch = tmp_path_factory.mktemp("launch")
    shutil.copytree(REPO / "examples", launch / "examples")
    train = readme_commands()[0]
    run_cli(*shlex.split(train)[1:], *FAST, cwd=launch)
    return launch


def digest(run: Path) -> dict[str, str]:
    """sha256 of every file of a run except its eval/ folder: hydrafit-eval must not change one."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file() and "eval" not in p.relative_to(run).parts}


def one_line_error(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr[-2000:])
    assert lines[0].startswith("hydrafit-eval: error: ")
    return lines[0]


def test_readme_section_lists_the_commands_these_tests_run():
    assert readme_commands() == [
        "hydrafit-train dataset=csv dataset.path=examples/data/temperature.csv dataset.x=day "
        "dataset.y=temp_c hydra.run.dir=outputs/temperature",
        "hydrafit-eval run=outputs/temperature",
        "hydrafit-eval run=outputs/temperature input=examples/data/new_days.csv output=outputs/predictions.csv",
        'hydrafit-train dataset=expression dataset.expr="sin(3*x) + 0.5*x" dataset.n_points=256',
    ]  # the last one is run by tests/test_own_data.py
    assert (REPO / "docs" / "temperature_fit.png").stat().st_size > 10_000


def test_csv_fit_matches_the_golden_numbers_and_the_known_function(walkthrough):
    from hydrafit.models import Regressor

    run = walkthrough / "outputs" / "temperature"
    metrics = read_metrics(run)
    assert metrics["status"] == "completed" and metrics["epochs"] == 250
    assert set(metrics) == {"train/mse", "val/mse", "epochs", "fit_seconds", "status"}  # no truth
    for key, value in GOLDEN.items():
        assert metrics[key] == pytest.approx(value, rel=0.02), key
    assert metrics["train/mse"] > 1.8 ** 2 * 0.9  # near, not below, the noise floor
    module = Regressor.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    days = torch.arange(1, 366, dtype=torch.float32).unsqueeze(1)
    with torch.no_grad():
        error = module.net(days) - TRUE_TEMPERATURE(days)
    assert error.pow(2).mean().sqrt().item() < TRUTH_TOLERANCE


def test_eval_reproduces_the_runs_metrics_and_plot_exactly_and_touches_nothing(walkthrough):
    run = walkthrough / "outputs" / "temperature"
    before = digest(run)
    run_cli(*shlex.split(readme_commands()[1])[1:], cwd=walkthrough, script="hydrafit-eval")
    recomputed, recorded = json.loads((run / "eval" / "last" / "metrics.json").read_text()), read_metrics(run)
    assert {k: recomputed[k] for k in GOLDEN} == {k: recorded[k] for k in GOLDEN}  # exactly
    assert recomputed["epochs"] == 250 and recomputed["checkpoint"].endswith("checkpoints/last.ckpt")
    assert (run / "eval" / "last" / "fit.png").read_bytes() == (run / "fit.png").read_bytes()
    assert digest(run) == before


def test_predictions_csv_holds_the_inputs_and_the_models_predictions(walkthrough):
    from hydrafit.metrics import predict
    from hydrafit.models import Regressor

    run_cli(*shlex.split(readme_commands()[2])[1:], cwd=walkthrough, script="hydrafit-eval")
    with open(walkthrough / "outputs" / "predictions.csv", newline="") as f:
        rows = list(csv.reader(f))
    with open(walkthrough / "examples" / "data" / "new_days.csv", newline="") as f:
        days = [row["day"] for row in csv.DictReader(f)]
    assert rows[0] == ["day", "prediction"] and [r[0] for r in rows[1:]] == days
    module = Regressor.load_from_checkpoint(walkthrough / "outputs" / "temperature" / "checkpoints" / "last.ckpt")
    x = torch.tensor([float(d) for d in days]).unsqueeze(1)
    written = torch.tensor([float(r[1]) for r in rows[1:]], dtype=torch.float32)
    assert torch.equal(written, predict(module.net, x).ravel())  # bit for bit, in °C
    assert (written - TRUE_TEMPERATURE(x.ravel())).abs().max() < 3 * TRUTH_TOLERANCE


def test_eval_and_resume_of_a_sweep_job_from_another_directory(tmp_path):
    from hydrafit.data import from_csv
    from hydrafit.models import load_regressor as load_model
    from hydrafit.metrics import final_metrics

    launch, elsewhere = tmp_path / "launch", tmp_path / "elsewhere"
    (launch / "data").mkdir(parents=True)
    elsewhere.mkdir()
    (launch / "data" / "line.csv").write_text("".join(f"{i},{2 * i + 1}\n" for i in range(30)))
    run_cli("-m", "dataset=csv", "dataset.path=data/line.csv", "dataset.x=0", "dataset.y=1", "seed=7",
            "trainer.max_epochs=30", "callbacks.model_checkpoint.every_n_epochs=10", *FAST,
            "hydra.sweep.dir=sweep", cwd=launch)
    (elsewhere / "new.csv").write_text("when,other\n0.5,a\n100,b\n")
    job = launch / "sweep" / "0"
    assert set(read_metrics(job)) == {"train/mse", "val/mse", "epochs", "fit_seconds", "status"}  # no truth/
    run_cli(f"run={job}", "ckpt=best", "input=new.csv", "x=when", "output=out/p.csv", cwd=elsewhere,
            script="hydrafit-eval")
    recomputed = json.loads((job / "eval" / "best" / "metrics.json").read_text())
    module, epochs = load_model(job / "checkpoints" / "best.ckpt")
    datamodule = from_csv(str(launch / "data" / "line.csv"), x=0, y=1, seed=7)
    assert {k: recomputed[k] for k in ("train/mse", "val/mse")} == final_metrics(module.net, datamodule)
    assert recomputed["epochs"] == epochs and epochs in (10, 20, 30)  # a periodic save's, the lowest loss
    rows = (elsewhere / "out" / "p.csv").read_text().splitlines()
    assert rows[0] == "when,prediction" and [r.split(",")[0] for r in rows[1:]] == ["0.5", "100"]
    # resume, too, finds the run's data relative to where the run, not the resume, was started
    run_cli(f"resume={job}", "trainer.max_epochs=35", cwd=elsewhere)
    assert read_metrics(job)["epochs"] == 35 and read_metrics(job)["status"] == "completed"


@pytest.mark.parametrize("case", ["no-run", "not-a-run", "no-checkpoint", "bad-ckpt-name", "no-input"])
def test_bad_request_is_one_line_exit_2_and_creates_nothing(walkthrough, tmp_path, case):
    run = walkthrough / "outputs" / "temperature"
    (tmp_path / "plain").mkdir()
    shutil.copytree(run / ".hydra", tmp_path / "untrained" / ".hydra")  # a run without checkpoints
    args, message = {
        "no-run": ("run=outputs/nope", f"run: no directory 'outputs/nope' (looked for {tmp_path}/outputs/nope)"),
        "not-a-run": ("run=plain", "run: 'plain' is not a hydrafit run directory (no .hydra/config.yaml)"),
        "no-checkpoint": ("run=untrained", "ckpt: the run has no last checkpoint"),
        "bad-ckpt-name": (f"run={run} ckpt=middle", "ckpt must be one of last, best, got 'middle'"),
        "no-input": (f"run={run} input=gone.csv", "input: no file 'gone.csv'"),
    }[case]
    proc = run_cli(*args.split(), cwd=tmp_path, script="hydrafit-eval", check=False)
    assert message in one_line_error(proc)
    assert not (tmp_path / "outputs").exists() and not list(tmp_path.rglob("eval"))


def test_input_without_the_x_column_is_one_line_exit_2(walkthrough, tmp_path):
    (tmp_path / "new.csv").write_text("date,minute\n2025-01-01,3\n")
    run = walkthrough / "outputs" / "temperature"
    proc = run_cli(f"run={run}", "input=new.csv", cwd=tmp_path, script="hydrafit-eval", check=False)
    assert one_line_error(proc) == (
        "hydrafit-eval: error: input: no column 'day' in new.csv; its columns are: date, minute; "
        "the run's x column is 'day': name the input's with x=<header name or index>")
    assert not (run / "eval" / "last" / "predictions.csv").exists()
