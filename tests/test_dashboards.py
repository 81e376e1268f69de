"""The dashboards the ui extra installs (in an environment of their own: `make ui`, .venv-ui),
started as the docs say against what a real run left, read back through their HTTP APIs on
127.0.0.1, and stopped.

Run: make ui && .venv/bin/python -m pytest tests/test_dashboards.py -q -n 0   (about 45 s on 2 cores)
"""
from __future__ import annotations

import json
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import optuna
import pytest

from conftest import REPO, read_metrics, run_cli
from test_docs import commands, page, section
from test_sweeps import PLACEHOLDER, readme, sweep_commands


UI_BIN = REPO / ".venv-ui" / "bin"  # `make ui`; `make test` makes it first
pytestmark = pytest.mark.skipif(not (UI_BIN / "mlflow").exists() or not (UI_BIN / "optuna-dashboard").exists(),
                                reason="the dashboards' environment is missing: make ui")


def free_port() -> int:
    """A port no one listens on now (the OS picks it; the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str, proc: subprocess.Popen, timeout: float = 60):
    """GET `url` as JSON, retrying while the server `proc` starts (imports, binds its port)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"no answer from {url} in {timeout} s"
            time.sleep(0.2)


@pytest.fixture
def serve():
    """serve(command, cwd): start a dashboard server's `command`; stopped when the test ends."""
    procs = []

    def start(command: list[str], cwd: Path) -> subprocess.Popen:
        procs.append(subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
        return procs[-1]

    yield start
    for proc in procs:
        proc.terminate()
        proc.communicate(timeout=30)


def test_optuna_dashboard_serves_a_search_and_its_trials(tmp_path, serve):
    """docs/search.md's `optuna-dashboard sqlite:///<sweep dir>/optuna.db` on a 2-trial search."""
    sweep_dir = tmp_path / "outputs" / "multiruns" / "search"
    args = readme("hydrafit-train -m hparams_search=optuna")
    run_cli(*args[1:], "hydra.sweeper.n_trials=2", "trainer.max_epochs=5", "callbacks.fit_plot.n_images=0",
            f"hydra.sweep.dir={sweep_dir}", cwd=tmp_path)
    trials = optuna.load_study(study_name="hydrafit", storage=f"sqlite:///{sweep_dir / 'optuna.db'}").trials

    (line,) = [c for c in sweep_commands() if c.startswith("optuna-dashboard ")]
    command = [a.replace(PLACEHOLDER, str(sweep_dir.relative_to(tmp_path))) for a in shlex.split(line)]
    port = free_port()
    proc = serve([str(UI_BIN / command[0]), *command[1:], "--host", "127.0.0.1", "--port", str(port)], tmp_path)
    base = f"http://127.0.0.1:{port}"

    (summary,) = get_json(f"{base}/api/studies", proc)["study_summaries"]
    assert summary["study_name"] == "hydrafit" and summary["directions"] == ["minimize"]
    detail = get_json(f"{base}/api/studies/{summary['study_id']}", proc)
    assert [(t["number"], t["state"]) for t in detail["trials"]] == [(0, "Complete"), (1, "Complete")]
    for served, trial in zip(detail["trials"], trials):
        assert served["values"] == pytest.approx([trial.value])
        assert {p["name"]: p["param_external_value"] for p in served["params"]} == {
            k: str(v) for k, v in trial.params.items()}
        attrs = {a["key"]: a["value"] for a in served["user_attrs"]}
        assert attrs["job_dir"] == str((sweep_dir / str(trial.number)).resolve())
    assert [t["number"] for t in detail["best_trials"]] == [min(trials, key=lambda t: t.value).number]


# --- MLflow: docs/tracking.md's `mlflow ui` on the store a logger=mlflow run wrote ----------------


def post_json(url: str, body: dict) -> dict:
    """POST `body` as JSON to a server that answers already (MLflow's search endpoints are POSTs)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_mlflow_ui_serves_a_run_with_its_params_metrics_and_fit_png(tmp_path, serve, monkeypatch):
    """tracking.md's MLflow commands as written: a logger=mlflow run (shortened), then `mlflow ui`
    on its store from the same launch directory; the run, its parameters, final metrics, train/loss
    history and fit.png read back through MLflow's REST API, and the web app's page served."""
    lines = commands(section(page("tracking.md"), "MLflow"))
    (train,) = [c for c in lines if c.startswith("hydrafit-train ")]
    (ui,) = [c for c in lines if c.startswith("mlflow ui ")]
    args = shlex.split(train)[1:]
    run_cli(*args, "trainer.max_epochs=20", "callbacks.fit_plot.n_images=1", cwd=tmp_path)
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    (experiment_name,) = [a.split("=", 1)[1] for a in args if a.startswith("logger.experiment_name=")]

    command, port = shlex.split(ui), free_port()
    # One worker, not MLflow's four, and without MLflow's job runner (GenAI jobs, which browsing
    # runs does not use): on 2 busy cores the server then answers in ~12 s, not ~20, and stops
    # in ~3 s, not ~25.
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    proc = serve([str(UI_BIN / command[0]), *command[1:], "--host", "127.0.0.1", "--port", str(port),
                  "--workers", "1"], tmp_path)
    api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    query = urllib.parse.urlencode({"experiment_name": experiment_name})
    experiment = get_json(f"{api}/experiments/get-by-name?{query}", proc, timeout=180)["experiment"]
    (run,) = post_json(f"{api}/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    info, data = run["info"], run["data"]
    assert (info["run_name"], info["status"]) == (run_dir.name, "FINISHED")
    params = {p["key"]: p["value"] for p in data["params"]}
    assert (params["optimizer/lr"], params["trainer/max_epochs"]) == ("0.03", "20")
    final = {k: v for k, v in read_metrics(run_dir).items() if "/" in k}
    assert {m["key"]: m["value"] for m in data["metrics"] if m["key"] in final} == pytest.approx(final, rel=1e-12)
    query = urllib.parse.urlencode({"run_id": info["run_id"], "metric_key": "train/loss"})
    assert sorted(m["step"] for m in get_json(f"{api}/metrics/get-history?{query}", proc)["metrics"]) == list(range(20))

    listed = get_json(f"{api}/artifacts/list?run_id={info['run_id']}", proc)["files"]
    assert {f["path"] for f in listed} == {"fit.png", "config.yaml"}
    query = urllib.parse.urlencode({"path": "fit.png", "run_uuid": info["run_id"]})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/get-artifact?{query}", timeout=10) as response:
        assert response.read() == (run_dir / "fit.png").read_bytes()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:  # the full package's web app
        assert "<title>MLflow</title>" in response.read().decode()
