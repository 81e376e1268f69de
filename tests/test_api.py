"""hydrafit.fit / hydrafit.load: the CLI's runs, in-process, for notebooks."""
from __future__ import annotations

import csv
import signal
import subprocess
import sys

import numpy as np
import pytest

import hydrafit
from conftest import read_metrics, run_cli

SHORT = ["trainer.max_epochs=30", "callbacks.fit_plot.n_images=0"]


def test_fit_twice_equals_the_cli_and_load_round_trips(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    first = hydrafit.fit([*SHORT, "model.hidden_dims=[8]"])  # run dir named as the CLI names it
    second = hydrafit.fit([*SHORT, "optimizer=sgd", "optimizer.lr=0.01"], run_dir=tmp_path / "second")
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the caller's again

    assert first.run_dir.parent == tmp_path / "outputs" / "runs" and second.run_dir == tmp_path / "second"
    for result in (first, second):
        assert result.metrics == read_metrics(result.run_dir) and result.metrics["status"] == "completed"
        assert {p.name for p in (result.run_dir / ".hydra").iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}
        assert (result.run_dir / "train.log").read_text().count("truth/rmse =") == 1
        assert not result.model.training and next(result.model.parameters()).device.type == "cpu"
    assert list(first.config.model.hidden_dims) == [8] and second.config.optimizer.lr == 0.01
    assert first.config.callbacks.metrics_file.dirpath == str(first.run_dir)  # resolved

    cli = tmp_path / "cli"  # the same run from the command line: the same numbers, bitwise
    run_cli(*SHORT, "model.hidden_dims=[8]", f"hydra.run.dir={cli}", cwd=tmp_path)
    numbers = {k: v for k, v in read_metrics(cli).items() if k not in ("fit_seconds",)}
    assert numbers == {k: v for k, v in first.metrics.items() if k in numbers}

    # predict == hydrafit-eval's predictions of the run, in the data's units
    x = [-2.0, -0.37, 0.0, 1.5, 2.0]
    with open(tmp_path / "x.csv", "w", newline="") as f:
        csv.writer(f).writerows([["x"], *[[v] for v in x]])
    run_cli(f"run={first.run_dir}", "input=x.csv", "output=p.csv", cwd=tmp_path, script="hydrafit-eval")
    evaluated = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)[:, 1]
    assert first.predict(x).dtype == np.float32 and first.predict(x).tolist() == evaluated.astype(np.float32).tolist()
    assert first.predict(2.0).shape == () and first.predict(np.array(x).reshape(5, 1)).shape == (5, 1)

    loaded = hydrafit.load(first.run_dir)
    assert loaded.run_dir == first.run_dir and loaded.metrics == first.metrics and loaded.config == first.config
    assert loaded.predict(x).tolist() == first.predict(x).tolist()


@pytest.mark.parametrize("overrides,message", [
    (["optimizer.lr=-1"], "optimizer.lr must be > 0, got -1"),
    (["model.hiden=3"], "model.hiden: unknown key; did you mean 'hidden_dims'?"),
    (["model=transformer"], "model=transformer: no such option; available: mlp, polynomial"),
    (["dataset=csv", "dataset.path=missing.csv"], "dataset.path: no file 'missing.csv'"),  # found while building
])
def test_bad_input_raises_the_clis_line_and_leaves_no_run_dir(tmp_path, monkeypatch, overrides, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(hydrafit.ConfigError) as raised:
        hydrafit.fit(overrides)
    assert str(raised.value).startswith(message)
    assert not (tmp_path / "outputs").exists()
    if overrides == ["optimizer.lr=-1"]:  # the CLI prints the same line
        proc = run_cli(*overrides, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and proc.stderr.strip() == f"hydrafit-train: error: {raised.value}"


def test_load_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(hydrafit.ConfigError, match="is not a hydrafit run directory"):
        hydrafit.load(tmp_path)


def test_import_is_light_and_a_run_without_mlflow_does_not_import_it(tmp_path):
    code = ("import sys, hydrafit; print(any(m in sys.modules for m in ('torch', 'pytorch_lightning')));"
            "hydrafit.fit(['trainer.max_epochs=2', 'callbacks=none'], run_dir='r'); print('mlflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert proc.stdout.split()[-2:] == ["False", "False"]
