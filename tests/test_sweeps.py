"""Sweeps as a user runs them: the commands of the README's "## Sweeps" section, run as written
(shortened with appended overrides, into hydra.sweep.dir=<tmp>), then the files they leave read back.

Run: .venv/bin/python -m pytest tests/test_sweeps.py -q   (about a minute on 2 cores)
"""
from __future__ import annotations

import csv
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import BIN, REPO, read_metrics, run_cli

# The pages whose sweep commands these tests (and test_population's, test_optuna's) run.
SWEEP_PAGES = [(REPO / "docs" / name).read_text() for name in ("sweeps.md", "vectorised.md", "search.md")]
SHORT = ["trainer.max_epochs=3", "callbacks.fit_plot.n_images=0"]  # fit.png is still drawn, at the end
PLACEHOLDER = "outputs/multiruns/<date>_<time>"
NUMBERS = ("train/mse", "truth/rmse", "baseline/truth_rmse", "epochs")


def sweep_commands() -> list[str]:
    """Command lines of the ```bash blocks of the docs' sweeps, vectorised and search pages,
    without trailing comments."""
    blocks = [b for text in SWEEP_PAGES for b in re.findall(r"```bash\n(.*?)```", text, re.S)]
    return [line.split("  #")[0].strip() for b in blocks for line in b.splitlines() if line.strip()]


def readme(pattern: str) -> list[str]:
    """The arguments of the README sweep command that is `pattern`, or of the one that contains it."""
    lines = [c for c in sweep_commands() if c == pattern] or [c for c in sweep_commands() if pattern in c]
    assert len(lines) == 1, (pattern, lines)
    return shlex.split(lines[0])


def with_dir(args: list[str], sweep_dir: Path) -> list[str]:
    """README arguments with the placeholder sweep directory replaced by a real one."""
    return [a.replace(PLACEHOLDER, str(sweep_dir)) for a in args]


def run_sweep(args: list[str], cwd: Path, sweep_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """`hydrafit-train -m ...` from the README, shortened, into `sweep_dir`; any exit code."""
    assert args[:2] == ["hydrafit-train", "-m"], args
    return run_cli(*args[1:], *SHORT, *extra, f"hydra.sweep.dir={sweep_dir}", cwd=cwd, check=False)


def summary_rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def tree_stamps(path: Path) -> dict[str, int]:
    """mtime (ns) of every file and directory under `path`, by relative path."""
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in [path, *path.rglob("*")]}


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The README's 3 x 3 grid (lr x hidden_dims), 3 epochs a job."""
    cwd = tmp_path_factory.mktemp("grid")
    proc = run_sweep(readme("model.hidden_dims=[8],[16],[32]"), cwd, cwd / "sweep")
    return cwd / "sweep", proc


@pytest.fixture(scope="module")
def diverging(tmp_path_factory):
    """The README's 4-job SGD grid whose lr=10 job diverges (20 epochs: it does by epoch ~4)."""
    cwd = tmp_path_factory.mktemp("diverging")
    proc = run_sweep(readme("-m optimizer=sgd"), cwd, cwd / "sweep", "trainer.max_epochs=20")
    return cwd / "sweep", proc


def test_grid_runs_every_job_into_a_complete_run_dir(grid):
    sweep_dir, proc = grid
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == [str(n) for n in range(9)]
    for n in range(9):
        job = sweep_dir / str(n)
        assert {".hydra", "fit.png", "metrics.json", "tensorboard", "checkpoints", "train.log"} <= {
            p.name for p in job.iterdir()}
        assert read_metrics(job)["status"] == "completed" and read_metrics(job)["epochs"] == 3
    # Hydra's job order: the first swept key varies slowest.
    assert yaml.safe_load((sweep_dir / "1" / ".hydra" / "overrides.yaml").read_text())[:2] == [
        "optimizer.lr=0.003", "model.hidden_dims=[16]"]


def test_grid_summary_csv_md_and_png(grid):
    sweep_dir, proc = grid
    rows = summary_rows(sweep_dir)
    assert list(rows[0])[:5] == ["job", "optimizer.lr", "model.hidden_dims", "status", "truth/rmse"]
    assert {"train/mse", "baseline/truth_rmse", "epochs", "fit_seconds", "wall_seconds", "error"} <= set(rows[0])
    assert [r["job"] for r in rows] == [str(n) for n in range(9)]
    assert {(r["optimizer.lr"], r["model.hidden_dims"]) for r in rows} == {
        (lr, dims) for lr in ("0.003", "0.01", "0.03") for dims in ("[8]", "[16]", "[32]")}
    for row in rows:
        metrics = read_metrics(sweep_dir / row["job"])
        assert row["status"] == "completed" and row["error"] == ""
        assert float(row["truth/rmse"]) == pytest.approx(metrics["truth/rmse"], rel=1e-12)
        assert float(row["fit_seconds"]) <= float(row["wall_seconds"]) < 120
    best = min(rows, key=lambda r: float(r["truth/rmse"]))

    table = [line for line in (sweep_dir / "summary.md").read_text().splitlines() if line.startswith("| ")]
    ranked = [line.split(" | ")[1] for line in table[1:]]  # the job column, header skipped
    assert ranked == [r["job"] for r in sorted(rows, key=lambda r: float(r["truth/rmse"]))]
    assert table[1].startswith("| ★ | " + best["job"] + " |") and sum("★" in line for line in table) == 1
    assert f"9 jobs: 9 completed; best truth/rmse = {float(best['truth/rmse']):.6g}" in proc.stdout

    width, height = png_size(sweep_dir / "sweep.png")  # 3 columns of panels + the lr curve on top
    assert width > 1000 and height > width


def test_failing_job_is_recorded_the_others_run_and_the_sweep_exits_nonzero(diverging):
    sweep_dir, proc = diverging
    assert proc.returncode == 1
    rows = summary_rows(sweep_dir)
    assert [(r["optimizer.lr"], r["status"]) for r in rows] == [
        ("0.001", "completed"), ("0.01", "completed"), ("0.1", "completed"), ("10", "diverged")]
    failed = read_metrics(sweep_dir / "3")
    assert failed["status"] == "diverged" and "train/loss became" in failed["error"]
    assert rows[3]["error"] == failed["error"] and rows[3]["truth/rmse"] == ""
    assert "1 of 4 jobs did not complete" in proc.stderr
    assert f"#3 optimizer.lr=10: diverged: {failed['error']}" in proc.stderr
    assert f"hydrafit-train -m resume_sweep={sweep_dir}" in proc.stderr
    assert png_size(sweep_dir / "sweep.png")[0] > 1000  # 4 panels in a row, the curve above
    md = (sweep_dir / "summary.md").read_text()
    assert "4 jobs: 3 completed, 1 diverged" in md and "| ★ | 2 | 0.1 |" in md  # lr=0.1 fits best in 20 epochs


def test_resume_reruns_only_the_jobs_without_a_completed_result(diverging, tmp_path):
    """A killed and partly failed sweep: job 1 never started, job 2 was killed mid-fit, job 3
    diverged. Resuming reruns 1, 2 and 3 (3 diverges again) and leaves job 0 alone."""
    original, _ = diverging
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(original, sweep_dir)
    shutil.rmtree(sweep_dir / "1")
    (sweep_dir / "2" / "metrics.json").write_text('{"status": "running"}')
    before = tree_stamps(sweep_dir / "0")
    time.sleep(0.01)

    proc = run_cli(*with_dir(readme(f"hydrafit-train -m resume_sweep={PLACEHOLDER}"), sweep_dir)[1:],
                   cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]  # job 3 diverges again
    assert "1 of 4 jobs completed; running #1 #2 #3" in proc.stdout
    assert tree_stamps(sweep_dir / "0") == before  # not a file or directory of job 0 touched
    for n in (1, 2):  # bitwise the numbers of the first attempt: same seed, same machine
        rerun, first = read_metrics(sweep_dir / str(n)), read_metrics(original / str(n))
        assert rerun["status"] == "completed"
        assert {k: rerun[k] for k in NUMBERS} == {k: first[k] for k in NUMBERS}
    assert read_metrics(sweep_dir / "3")["status"] == "diverged"
    assert (sweep_dir / "3" / "metrics.json").stat().st_mtime_ns > before["."]
    assert sorted(p.name.split("_")[0] for p in (sweep_dir / "previous_attempts").iterdir()) == ["2", "3"]
    assert [r["status"] for r in summary_rows(sweep_dir)] == ["completed"] * 3 + ["diverged"]
    assert (sweep_dir / "multirun.yaml").read_bytes() == (original / "multirun.yaml").read_bytes()


def test_ctrl_c_stops_the_sweep_after_the_current_job_and_leaves_a_summary(tmp_path):
    """SIGINT stops the running job gracefully (status interrupted) and the sweep with it: the
    remaining jobs do not start, the summary says so, exit 130, resumable."""
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.Popen([str(BIN / "hydrafit-train"), "-m", "optimizer.lr=0.01,0.02,0.03",
                             "trainer.max_epochs=100000", "callbacks.fit_plot.n_images=1",
                             "callbacks.model_checkpoint.every_n_epochs=1",
                             f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (sweep_dir / "0" / "checkpoints" / "last.ckpt").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)  # the first epoch's checkpoint: training (and the signal handler) has started
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    rows = summary_rows(sweep_dir)
    assert [(r["optimizer.lr"], r["status"]) for r in rows] == [
        ("0.01", "interrupted"), ("0.02", "missing"), ("0.03", "missing")]
    assert not (sweep_dir / "1").exists() and (sweep_dir / "sweep.png").is_file()
    assert "3 of 3 jobs did not complete" in stderr and f"resume_sweep={sweep_dir}" in stderr


@pytest.mark.parametrize("args,message", [
    (["-m", "resume_sweep=NOT_A_SWEEP"], "is not a sweep directory (no multirun.yaml)"),
    (["-m", "resume_sweep=SWEEP", "optimizer.lr=0.5"], "a resumed sweep runs its own overrides"),
    (["-m", "resume_sweep=SWEEP", "hparams_search=optuna"], "a sweep resumes with the sweeper it recorded"),
    (["-m", "resume_sweep=SWEEP", "hydra.sweeper.n_trials=9"], "only an Optuna search (hparams_search=optuna) has trials"),
    (["resume_sweep=SWEEP"], "run it with -m (--multirun)"),
])
def test_resume_refuses_what_cannot_continue_the_sweep(diverging, tmp_path, args, message):
    original, _ = diverging
    args = [a.replace("SWEEP", str(original)).replace("NOT_A_SWEEP", str(tmp_path)) for a in args]
    before = tree_stamps(original)
    proc = run_cli(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith(
        ("hydrafit-train: error: resume_sweep: ", "hydrafit-train: error: hydra.sweeper.n_trials: "))
    assert tree_stamps(original) == before and not (tmp_path / "outputs").exists()


def test_sweep_report_rebuilds_the_summary_of_a_killed_sweep(diverging, tmp_path):
    """Job 1's directory is missing, job 2 was killed mid-fit (metrics.json says running, no
    fit.png), job 3 diverged: the report says so, in the files and on the terminal."""
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(diverging[0], sweep_dir)
    shutil.rmtree(sweep_dir / "1")
    (sweep_dir / "2" / "metrics.json").write_text('{"status": "running"}')
    (sweep_dir / "2" / "fit.png").unlink()
    for name in ("summary.csv", "summary.md", "sweep.png"):
        (sweep_dir / name).unlink()

    proc = run_cli(*with_dir(readme("hydrafit-sweep-report"), sweep_dir)[1:], cwd=tmp_path,
                   script="hydrafit-sweep-report", check=False)
    assert proc.returncode == 1
    rows = summary_rows(sweep_dir)
    assert [(r["job"], r["optimizer.lr"], r["status"]) for r in rows] == [
        ("0", "0.001", "completed"), ("1", "0.01", "missing"), ("2", "0.1", "running"), ("3", "10", "diverged")]
    assert "| ★ | 0 | 0.001 |" in proc.stdout  # the table, best of what completed
    assert "3 of 4 jobs did not complete" in proc.stderr
    assert "#1 optimizer.lr=0.01: missing" in proc.stderr and "#2 optimizer.lr=0.1: running" in proc.stderr
    assert png_size(sweep_dir / "sweep.png")[0] > 1000

    (sweep_dir / "multirun.yaml").unlink()  # no record of the plan: the job directories tell
    proc = run_cli(str(sweep_dir), cwd=tmp_path, script="hydrafit-sweep-report", check=False)
    assert proc.returncode == 1
    assert [(r["job"], r["optimizer.lr"]) for r in summary_rows(sweep_dir)] == [
        ("0", "0.001"), ("2", "0.1"), ("3", "10")]

    proc = run_cli(str(tmp_path / "nowhere"), cwd=tmp_path, script="hydrafit-sweep-report", check=False)
    assert proc.returncode == 2 and "is not a sweep directory" in proc.stderr


def test_joblib_sweep_runs_jobs_in_worker_processes(tmp_path):
    args = readme("hydra/launcher=joblib")
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.Popen([str(BIN / args[0]), *args[1:], *SHORT, f"hydra.sweep.dir={sweep_dir}"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    rows = summary_rows(sweep_dir)
    assert [(r["job"], r["optimizer.lr"], r["status"]) for r in rows] == [
        ("0", "0.01", "completed"), ("1", "0.03", "completed")]
    for row in rows:
        job = sweep_dir / row["job"]
        assert f"optimizer.lr={row['optimizer.lr']}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert float(row["truth/rmse"]) == read_metrics(job)["truth/rmse"]
        events = next(job.glob("tensorboard/*/events.out.tfevents.*"))
        assert int(events.name.split(".")[-2]) != proc.pid  # written by a worker, not the launcher
    assert "2 jobs: 2 completed" in stdout and (sweep_dir / "sweep.png").is_file()


def test_optuna_trials_search_lr_width_depth_activation_and_appear_like_jobs(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_sweep(readme("hydrafit-train -m hparams_search=optuna"), tmp_path, sweep_dir, "hydra.sweeper.n_trials=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = summary_rows(sweep_dir)
    assert list(rows[0])[:6] == ["job", "optimizer.lr", "mlp_shape.width", "mlp_shape.depth",
                                 "model.activation", "status"]
    assert [r["status"] for r in rows] == ["completed"] * 3
    for row in rows:
        assert 0.001 <= float(row["optimizer.lr"]) <= 0.1
        assert row["model.activation"] in ("relu", "tanh", "gelu", "silu")
        width, depth = int(row["mlp_shape.width"]), int(row["mlp_shape.depth"])
        ckpt = torch.load(sweep_dir / row["job"] / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["hyper_parameters"]["model"]["hidden_dims"] == [width] * depth  # the net trained
    assert len({r["optimizer.lr"] for r in rows}) == 3
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(min(float(r["truth/rmse"]) for r in rows), rel=1e-6)


def test_optuna_search_goes_on_after_failed_trials_and_exits_nonzero(tmp_path):
    """lr drawn from {-1, 0.01}: validation refuses -1, those trials fail, the search goes on
    (n_trials asks at most; a resume would replace the failed ones): the summary callback exits 1."""
    sweep_dir = tmp_path / "sweep"
    proc = run_sweep(readme("hydrafit-train -m hparams_search=optuna"), tmp_path, sweep_dir, "hydra.sweeper.n_trials=4",
                     "optimizer.lr=choice(-1,0.01)")
    assert proc.returncode == 1
    rows = summary_rows(sweep_dir)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"failed", "completed"}
    failed = [r for r in rows if r["status"] == "failed"]
    assert all(r["optimizer.lr"] == "-1" for r in failed)
    assert all(r["error"] == "ConfigError: optimizer.lr must be > 0, got -1" for r in failed)
    assert all(r["optimizer.lr"] == "0.01" and float(r["truth/rmse"]) > 0 for r in rows if r not in failed)
    assert f"{len(failed)} of 4 jobs did not complete" in proc.stderr
    assert f"continue the search with: hydrafit-train -m resume_sweep={sweep_dir}" in proc.stderr
    assert "Traceback" not in proc.stderr  # the sweep ended normally; the exit status says it failed


def test_bookkeeping_after_a_job_reads_only_that_job_and_matches_a_rebuild(grid, tmp_path, monkeypatch):
    """What keeps the work between two jobs flat (benchmarks/sweep_overhead.py times it): after
    each job only that job's directory is read; the tables equal a rebuild from every directory."""
    from hydrafit.sweeps import records, summary

    sweep_dir = tmp_path / "sweep"
    shutil.copytree(grid[0], sweep_dir)
    for job in sweep_dir.glob("[0-9]*"):
        if int(job.name) >= 4:
            shutil.rmtree(job)  # not started yet
    reads = []
    read_job = records.read_job
    monkeypatch.setattr(records, "read_job", lambda num, *a: reads.append(num) or read_job(num, *a))
    summary.update_after_job(sweep_dir, 3)
    assert sorted(reads) == list(range(9))  # the first time: every job, started or not
    for num in range(4, 7):
        shutil.copytree(grid[0] / str(num), sweep_dir / str(num))
        reads.clear()
        summary.update_after_job(sweep_dir, num)
        assert reads == [num]
    before = (sweep_dir / "summary.md").read_text()
    for num in range(7, 9):  # jobs that end within a second of the last rewrite (SweepSummary) wait for the next
        shutil.copytree(grid[0] / str(num), sweep_dir / str(num))
        summary.update_after_job(sweep_dir, num, rewrite=False)
    assert (sweep_dir / "summary.md").read_text() == before
    reads.clear()
    summary.update_after_job(sweep_dir, 8)
    assert sorted(reads) == [7, 8]
    incremental = [(sweep_dir / name).read_text() for name in ("summary.csv", "summary.md")]
    summary.write_summary(sweep_dir, figure=False)
    assert incremental == [(sweep_dir / name).read_text() for name in ("summary.csv", "summary.md")]


def test_tensorboard_shows_each_job_as_a_run_named_by_number_and_overrides(grid):
    sweep_dir, _ = grid
    rows = {r["job"]: r for r in summary_rows(sweep_dir)}
    for n, row in rows.items():
        (run,) = (sweep_dir / n / "tensorboard").iterdir()
        assert f"optimizer.lr={row['optimizer.lr']}" in run.name
        assert f"model.hidden_dims={row['model.hidden_dims']}" in run.name
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
        acc.Reload()
        plugin = acc.PluginTagToContent("hparams")
        hparams = plugin_data_pb2.HParamsPluginData.FromString(
            plugin["_hparams_/session_start_info"]).session_start_info.hparams
        assert hparams["optimizer/lr"].number_value == pytest.approx(float(row["optimizer.lr"]))
        assert "_hparams_/experiment" not in plugin  # the sweep's own, at its root, is the only one
        assert acc.Scalars("truth/rmse")[-1].value == pytest.approx(float(row["truth/rmse"]), rel=1e-6)
        assert len(acc.Scalars("train/loss")) == 3

    args = with_dir(readme("tensorboard --logdir"), sweep_dir)
    assert args[:2] == ["tensorboard", "--logdir"]
    # --inspect reads the event files as the server does, without opening a port.
    proc = subprocess.run([str(BIN / "tensorboard"), "--inspect", *args[1:]], capture_output=True,
                          text=True, timeout=120)
    found = proc.stdout.split("Found event files in:")[1].split("\n\n")[0].split()
    assert sorted(Path(p).relative_to(sweep_dir).parts[:1] for p in found) == [(), *sorted((n,) for n in rows)]
    acc = EventAccumulator(str(sweep_dir))  # the sweep's HPARAMS experiment: swept keys first
    acc.Reload()
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    assert [(h.name, h.differs) for h in experiment.hparam_infos][:3] == [
        ("optimizer/lr", True), ("model/hidden_dims", True), ("dataset/_target_", False)]
    assert [m.name.tag for m in experiment.metric_infos][:2] == ["truth/rmse", "train/mse"]


def test_readme_sweeps_section_is_what_these_tests_run():
    """Every command of the section is exercised above or in test_optuna.py; the extra installs
    what it names."""
    assert sorted(sweep_commands()) == sorted([
        'pip install "hydrafit[sweeps]"',
        "hydrafit-train -m optimizer.lr=0.003,0.01,0.03 model.hidden_dims=[8],[16],[32]",
        "hydrafit-train -m optimizer=sgd optimizer.lr=0.001,0.01,0.1,10",
        "hydrafit-train -m optimizer.lr=0.01,0.03 seed=1,2,3",  # tests/test_sweep_seeds.py
        f"hydrafit-train -m resume_sweep={PLACEHOLDER}",
        f"hydrafit-sweep-report {PLACEHOLDER}",
        "hydrafit-train -m hydra/launcher=joblib hydra.launcher.n_jobs=2 optimizer.lr=0.01,0.03",
        "hydrafit-train -m hparams_search=optuna",
        f"hydrafit-train -m resume_sweep={PLACEHOLDER} hydra.sweeper.n_trials=40",  # tests/test_optuna.py
        "hydrafit-train -m hparams_search=optuna hydra.sweeper.join=true hydra.sweep.dir=outputs/search",
        f"optuna-dashboard sqlite:///{PLACEHOLDER}/optuna.db",  # tests/test_dashboards.py
        f"tensorboard --logdir {PLACEHOLDER}",
        # run by tests/test_population.py
        "hydrafit-train -m hydra/launcher=vectorized optimizer.lr=0.01,0.03 seed=1,2,3,4",
        "hydrafit-train -m hydra/launcher=vectorized optimizer=sgd optimizer.lr=0.01,100,-1 model.hidden_dims=[8],[16]",
    ])
    import tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {d.split(">")[0] for d in project["optional-dependencies"]["sweeps"]} == {
        "hydra-joblib-launcher", "hydra-submitit-launcher", "optuna"}
    assert project["scripts"]["hydrafit-sweep-report"] == "hydrafit.cli.report:report"
    assert '-e ".[dev,sweeps,mlflow]"' in (REPO / "Makefile").read_text()  # the ui extra: `make ui`, its own venv
    from importlib.metadata import version
    for plugin in ("hydra-joblib-launcher", "hydra-submitit-launcher", "optuna"):
        assert version(plugin)  # installed here, as `make test` does
    assert int(version("optuna").split(".")[0]) >= 4
