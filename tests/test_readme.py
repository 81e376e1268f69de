"""The README's commands, run as written (shortened with appended overrides), so they cannot drift."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import hydrafit
from conftest import BIN, REPO, read_metrics, run_cli

README = (REPO / "README.md").read_text()
# Appended to each training command so the suite stays fast; later overrides win in Hydra.
SHORTEN = ["trainer.max_epochs=2", "callbacks.fit_plot.n_images=1"]


def section(title: str) -> str:
    """The text of one `## title` section of the README."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def commands(text: str) -> list[str]:
    """Command lines of the ```bash blocks in `text`, without trailing comments."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    return lines


def test_quick_start_is_make_train_and_make_test_and_ci_runs_the_same():
    assert commands(section("Quick start").split("### Without make")[0]) == ["make train", "make test"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_make_train_runs_the_default_experiment(tmp_path):
    venv = REPO / ".venv"
    if Path(sys.prefix).resolve() != venv.resolve() or not (venv / ".installed").exists():
        pytest.skip("the suite runs outside the Makefile's .venv; `make train` would reinstall")
    run = tmp_path / "run"
    subprocess.run(["make", "-s", "train", f"ARGS=hydra.run.dir={run} {' '.join(SHORTEN)}"],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    assert read_metrics(run)["status"] == "completed"


def test_without_make_block():
    lines = commands(section("Quick start").split("### Without make")[1])
    assert lines[0] == 'pip install -e ".[dev]"' and "dev = [" in (REPO / "pyproject.toml").read_text()
    assert lines[1] == "hydrafit-train"  # run for real by the default_run fixture
    proc = subprocess.run([sys.executable, "-m", "hydrafit.cli.train", "--cfg", "job"],
                          capture_output=True, text=True, check=True)
    assert "max_epochs: 250" in proc.stdout


TRAIN_LINES = [c for c in commands(section("Running experiments")) if c.startswith("hydrafit-train")]


@pytest.mark.parametrize("line", TRAIN_LINES)
def test_running_experiments_commands(tmp_path, line):
    args = shlex.split(line)[1:]
    if args[:1] == ["--cfg"]:
        assert "_target_: hydrafit.models.mlp" in run_cli(*args, cwd=tmp_path).stdout
        return
    run = tmp_path / "run"
    run_cli(*args, *SHORTEN, f"hydra.run.dir={run}", cwd=tmp_path)
    assert read_metrics(run)["status"] == "completed"
    for override in args:  # the run used what the README says
        key, value = override.split("=", 1)
        if "." in key and "max_epochs" not in key:
            assert value.strip("[]").split(",")[0] in (run / ".hydra" / "config.yaml").read_text()


def test_tensorboard_command_reads_a_run(default_run):
    line = next(c for c in commands(section("Running experiments")) if c.startswith("tensorboard"))
    assert line == "tensorboard --logdir outputs"
    # --inspect reads the event files like the server does, without opening a port.
    proc = subprocess.run([str(BIN / "tensorboard"), "--inspect", "--logdir", str(default_run)],
                          capture_output=True, text=True, timeout=120)
    assert "train/loss" in proc.stdout and "fit" in proc.stdout


def test_when_a_run_goes_wrong_commands(tmp_path):
    """The section's four commands, shortened: diverge, interruptible long run, resume, train longer."""
    lines = commands(section("When a run goes wrong"))
    assert [shlex.split(line)[1:] for line in lines] == [
        ["optimizer=sgd", "optimizer.lr=100"], ["trainer.max_epochs=5000"],
        ["resume=outputs/runs/<date>_<time>"], ["resume=outputs/runs/<date>_<time>", "trainer.max_epochs=8000"]]
    diverged = tmp_path / "diverged"
    proc = run_cli(*shlex.split(lines[0])[1:], f"hydra.run.dir={diverged}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and read_metrics(diverged)["status"] == "diverged"
    run = tmp_path / "outputs" / "runs" / "a_run"
    hydrafit.fit(["trainer.max_epochs=30", "callbacks.fit_plot.n_images=1"], run_dir=run)  # line 2, shortened
    for line, epochs in ((lines[2], 30), (lines[3], 40)):
        args = [a.replace("outputs/runs/<date>_<time>", str(run)).replace("8000", "40")
                for a in shlex.split(line)[1:]]
        run_cli(*args, cwd=tmp_path)
        assert read_metrics(run)["epochs"] == epochs and read_metrics(run)["status"] == "completed"


def test_from_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """In-process, as in a notebook (a new process would only add torch's import to the test)."""
    [code] = re.findall(r"```python\n(.*?)```", section("From Python"), re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md, From Python", "exec"), {})
    assert capsys.readouterr().out.strip() == "optimizer.lr must be > 0, got -1"  # what its comment says
    [run] = (tmp_path / "outputs" / "runs").iterdir()
    stated = float(re.search(r'result.metrics\["truth/rmse"\] +# ([\d.]+)', code)[1])
    assert read_metrics(run)["truth/rmse"] == pytest.approx(stated, rel=0.05)  # across CPUs
