"""hparams_search=optuna on hydrafit's own sweeper: a study that persists, resumes (also after
kill -9), is shared by several workers, prunes, and draws Optuna's pictures. Each test runs the real
`hydrafit-train -m` from another directory and reads the study back with Optuna's own API.

Run: .venv/bin/python -m pytest tests/test_optuna.py -q   (about 2 minutes on 2 cores)
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from conftest import BIN, read_metrics, run_cli
from test_sweeps import PLACEHOLDER, png_size, readme, summary_rows, tree_stamps

FAST = ["trainer.max_epochs=20", "callbacks.fit_plot.n_images=0"]


def search(cwd: Path, sweep_dir: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    """The README's `hydrafit-train -m hparams_search=optuna`, shortened, into `sweep_dir`."""
    args = readme("hydrafit-train -m hparams_search=optuna")
    return run_cli(*args[1:], *FAST, *extra, f"hydra.sweep.dir={sweep_dir}", cwd=cwd, check=check)


def resume(cwd: Path, sweep_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """The README's resume of a search (`resume_sweep=<dir> hydra.sweeper.n_trials=40`), with
    `extra` overrides after it (n_trials= replaces the README's 40)."""
    args = readme(f"resume_sweep={PLACEHOLDER} hydra.sweeper.n_trials=")
    return run_cli(*[a.replace(PLACEHOLDER, str(sweep_dir)) for a in args[1:]], *extra, cwd=cwd)


def study(sweep_dir: Path, name: str = "hydrafit") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


def states(trials) -> list[str]:
    return [t.state.name for t in trials]


@pytest.fixture(scope="module")
def extended(tmp_path_factory):
    """A 4-trial search, then resume_sweep= with n_trials=6: (sweep dir, mtimes of the first 4
    job dirs before the resume, the resume's process)."""
    cwd = tmp_path_factory.mktemp("extended")
    sweep_dir = cwd / "sweep"
    search(cwd, sweep_dir, "hydra.sweeper.n_trials=4")
    before = {n: tree_stamps(sweep_dir / str(n)) for n in range(4)}
    time.sleep(0.01)
    return sweep_dir, before, resume(cwd, sweep_dir, "hydra.sweeper.n_trials=6")


def test_resume_with_more_trials_extends_the_study_and_keeps_the_first_jobs(extended):
    sweep_dir, before, proc = extended
    trials = study(sweep_dir).trials
    assert [t.number for t in trials] == list(range(6)) and states(trials) == ["COMPLETE"] * 6
    assert {n: tree_stamps(sweep_dir / str(n)) for n in range(4)} == before  # not a file touched
    for trial in trials:
        job = sweep_dir / str(trial.number)
        assert trial.user_attrs["job_dir"] == str(job.resolve())
        assert read_metrics(job)["status"] == "completed"
        assert read_metrics(job)["truth/rmse"] == pytest.approx(trial.value, rel=1e-6)
        assert read_metrics(job)["epochs"] == 20  # the search's own overrides, recorded
    assert len({t.params["optimizer.lr"] for t in trials}) == 6
    assert [r["status"] for r in summary_rows(sweep_dir)] == ["completed"] * 6
    assert "6 jobs: 6 completed" in proc.stdout


def test_the_ended_search_leaves_optuna_pictures_linked_from_the_summary(extended):
    sweep_dir, _, _ = extended
    from PIL import Image

    for name in ("optimization_history.png", "param_importances.png"):
        width, height = png_size(sweep_dir / name)
        assert (width, height) == (800, 500) and (sweep_dir / name).stat().st_size > 10_000
        with Image.open(sweep_dir / name) as image:  # a picture, not a blank canvas
            assert len(image.convert("L").getcolors(maxcolors=1 << 16)) > 20
        assert f"]({name})" in (sweep_dir / "summary.md").read_text()


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)


def running(job: Path) -> bool:
    try:
        return json.loads((job / "metrics.json").read_text())["status"] == "running"
    except (OSError, ValueError):
        return False


def test_search_killed_mid_trial_resumes_failing_and_re_asking_that_trial(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = readme("hydrafit-train -m hparams_search=optuna")
    # 1000 epochs: ~2 s of training, so that the kill lands mid-trial even when this process
    # gets the CPU late (300 left ~0.5 s on a loaded machine; the resumed trials run as many).
    proc = subprocess.Popen([str(BIN / args[0]), *args[1:], *FAST, "trainer.max_epochs=1000",
                             "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: running(sweep_dir / "0"), proc)  # trial 0 is training
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert states(study(sweep_dir).trials) == ["RUNNING"]
    killed_params = study(sweep_dir).trials[0].params

    resume(tmp_path, sweep_dir, "hydra.sweeper.n_trials=2")
    trials = study(sweep_dir).trials
    assert states(trials) == ["FAIL", "COMPLETE", "COMPLETE"]  # n_trials=2 finished
    assert trials[1].params == killed_params and trials[1].user_attrs["retry_of"] == 0
    assert sorted(p.name for p in sweep_dir.iterdir() if p.name.isdigit()) == ["1", "2"]
    (attempt,) = (sweep_dir / "previous_attempts").iterdir()  # what the killed trial left
    assert attempt.name.startswith("0_") and running(attempt)
    assert [(r["job"], r["status"]) for r in summary_rows(sweep_dir)] == [("1", "completed"), ("2", "completed")]


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """The README's recipe: two workers started together into one sweep directory (one sqlite
    study, hydra.sweeper.join=true), n_trials=6. Returns the sweep directory."""
    cwd = tmp_path_factory.mktemp("workers")
    sweep_dir = cwd / "shared"
    args = readme("hydra.sweeper.join=true")
    command = [str(BIN / args[0]), *args[1:], *FAST, "hydra.sweeper.n_trials=6", f"hydra.sweep.dir={sweep_dir}"]
    procs = [subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, stderr[-3000:]
    return sweep_dir


def test_two_workers_share_one_study_and_one_sweep_dir(workers):
    """6 finished trials in all, none run twice, job numbers (trial numbers) never collide."""
    sweep_dir = workers
    trials = study(sweep_dir).trials
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(finished) == 6 and all(t.user_attrs.get("surplus") for t in trials if t not in finished)
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 6  # no trial run twice
    for trial in finished:
        job = sweep_dir / str(trial.number)
        assert read_metrics(job)["status"] == "completed" and (job / "checkpoints" / "last.ckpt").is_file()
        assert read_metrics(job)["truth/rmse"] == pytest.approx(trial.value, rel=1e-6)
        assert trial.user_attrs["job_dir"] == str(job.resolve())
    print("trials per worker:", {w: sum(t.user_attrs["worker"] == w for t in finished)
                                 for w in {t.user_attrs["worker"] for t in finished}})

    proc = run_cli(str(sweep_dir), cwd=sweep_dir.parent, script="hydrafit-sweep-report")
    assert sorted(int(r["job"]) for r in summary_rows(sweep_dir)) == sorted(t.number for t in finished)
    assert "6 jobs: 6 completed" in proc.stdout


def test_a_worker_with_its_own_sweep_dir_reports_the_whole_study(workers, tmp_path):
    """The other layout: a worker keeps its own sweep directory; its report lists every trial
    of the study, with the other workers' job directories. Without join=true it is refused."""
    storage = f"hydra.sweeper.storage=sqlite:///{workers / 'optuna.db'}"
    proc = search(tmp_path, tmp_path / "own", "hydra.sweeper.n_trials=7", storage, check=False)
    assert proc.returncode == 2 and not (tmp_path / "own" / "0").exists()
    assert "hydrafit-train: error: hydra.sweeper.study_name: a study 'hydrafit' already exists" in proc.stderr

    search(tmp_path, tmp_path / "own", "hydra.sweeper.n_trials=7", storage, "hydra.sweeper.join=true")
    trials = [t for t in study(workers).trials if t.state.name == "COMPLETE"]
    assert [p.name for p in (tmp_path / "own").iterdir() if p.name.isdigit()] == [str(trials[-1].number)]
    run_cli(str(tmp_path / "own"), cwd=tmp_path, script="hydrafit-sweep-report")  # 7 trials, 1 here
    rows = summary_rows(tmp_path / "own")
    assert [(int(r["job"]), r["status"]) for r in rows] == [(t.number, "completed") for t in trials]
    assert [float(r["truth/rmse"]) for r in rows] == pytest.approx([t.value for t in trials], rel=1e-6)


def test_a_pruned_trial_keeps_its_results_and_is_not_a_failure(tmp_path):
    """A pruner that must stop lr=1e-5 (truth/rmse still > 1 at epoch 10) and never lr=0.03.
    Trials asked two at a time (n_jobs=2): each pair goes to the launcher as one batch."""
    sweep_dir = tmp_path / "sweep"
    proc = search(tmp_path, sweep_dir, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
                  "optimizer.lr=choice(0.03,0.00001)",
                  "trainer.max_epochs=30", "callbacks.optuna_pruning.every_n_epochs=10",
                  "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,upper:1.0}")
    assert proc.returncode == 0 and "Error executing job" not in proc.stderr
    assert proc.stdout.count("Launching 2 jobs locally") == 2  # Hydra's basic launcher, per batch
    trials = study(sweep_dir).trials
    assert {t.params["optimizer.lr"]: t.state.name for t in trials} == {0.03: "COMPLETE", 1e-05: "PRUNED"}
    rows = summary_rows(sweep_dir)
    for trial, row in zip(trials, rows):
        metrics = read_metrics(sweep_dir / str(trial.number))
        if trial.state.name == "PRUNED":
            assert metrics["status"] == row["status"] == "pruned" and metrics["epochs"] == 10
            assert trial.intermediate_values[10] > 1.0 and metrics["truth/rmse"] > 1.0
            assert "pruned by Optuna at epoch 10" in metrics["error"]
            assert (sweep_dir / str(trial.number) / "checkpoints" / "last.ckpt").is_file()
        else:
            assert metrics["status"] == row["status"] == "completed" and metrics["epochs"] == 30
    assert "completed, " in proc.stdout and " pruned" in proc.stdout and "did not complete" not in proc.stderr


def test_the_sweeps_extra_installs_no_scipy():
    """hydra-optuna-sweeper (optuna<3) installed scipy, and Lightning's torchmetrics imports
    scipy.signal whenever it is there: ~1.5 s of every run's start (README, Sweeps)."""
    from importlib.metadata import PackageNotFoundError, version

    from conftest import REPO

    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve():
        pytest.skip("outside the Makefile's .venv, other packages may have installed scipy")
    with pytest.raises(PackageNotFoundError):
        version("scipy")


@pytest.mark.parametrize("override,message", [
    ("hydra.sweeper.pruner=mean", "hydra.sweeper.pruner: 'mean' is not a pruner; use one of none, median, hyperband"),
    ("hydra.sweeper.direction=down", "hydra.sweeper.direction must be minimize or maximize, got 'down'"),
    ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials must be an integer >= 1, got 0"),
])
def test_bad_search_settings_are_refused_in_one_line(tmp_path, override, message):
    proc = search(tmp_path, tmp_path / "sweep", override, check=False)
    line = proc.stderr.strip()
    assert proc.returncode == 2 and line.startswith(f"hydrafit-train: error: {message}"), proc.stderr[-2000:]
    assert line.count("\n") == 0
    assert not (tmp_path / "sweep" / "optuna.db").exists() and not (tmp_path / "sweep" / "0").exists()


def test_hydra_sweep_grammar_maps_to_optuna_distributions():
    """The grammar users write in hydra.sweeper.params, as Optuna distributions (in-process)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from hydrafit.sweeps.grammar import parse_sweep
    from hydrafit.sweeps.study import search_space

    space, fixed = search_space(parse_sweep(
        ["optimizer.lr=tag(log, interval(0.001, 0.1))", "mlp_shape.width=int(interval(8, 64))",
         "mlp_shape.depth=range(1,4)", "x=range(0,1,0.25)", "model.activation=relu,tanh",
         "model.hidden_dims=choice([8],[16])", "+y=choice(1,2)", "trainer.max_epochs=3"]))
    assert space == {
        "optimizer.lr": FloatDistribution(0.001, 0.1, log=True),
        "mlp_shape.width": IntDistribution(8, 64),
        "mlp_shape.depth": IntDistribution(1, 3),
        "x": FloatDistribution(0.0, 0.75, step=0.25),
        "model.activation": CategoricalDistribution(["relu", "tanh"]),
        "model.hidden_dims": CategoricalDistribution(["[8]", "[16]"]),
        "+y": CategoricalDistribution([1, 2]),
    }
    assert fixed == ["trainer.max_epochs=3"]
    with pytest.raises(ValueError, match="shuffle"):
        search_space(parse_sweep(["x=shuffle(1,2)"]))
