"""hydra/launcher=vectorized: sweeps trained as populations, each job still an ordinary run
directory with its single run's numbers; and the member-wise optimizers against torch.optim.

Run: .venv/bin/python -m pytest tests/test_population.py -q   (about 2 minutes on 2 cores)
"""
from __future__ import annotations

import csv
import shlex

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import hydrafit
from conftest import read_metrics, run_cli
from test_sweeps import sweep_commands

SHORT = ["trainer.max_epochs=40", "callbacks.fit_plot.n_images=0", "~callbacks.progress_bar"]  # fit.png: at the end
FILES = {".hydra", "fit.png", "metrics.json", "tensorboard", "checkpoints", "train.log"}


def readme(pattern: str) -> list[str]:
    """The arguments after `hydrafit-train` of the README sweep command containing `pattern`."""
    lines = [c for c in sweep_commands() if pattern in c and "launcher=vectorized" in c]
    assert len(lines) == 1, (pattern, lines)
    return shlex.split(lines[0])[1:]


def close(a: float, b: float, rtol: float = 1e-5) -> bool:
    return abs(a - b) <= rtol * abs(b)


def rows(sweep_dir) -> list[dict]:
    with open(sweep_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("kind,settings", [
    ("adam", [dict(lr=0.03, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
              dict(lr=0.001, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)]),
    ("adamw", [dict(lr=0.03, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
               dict(lr=0.01, betas=(0.5, 0.9), eps=1.1920929e-7, weight_decay=0.0)]),
    ("sgd", [dict(lr=0.01, momentum=0.9, weight_decay=0.0),
             dict(lr=0.1, momentum=0.0, weight_decay=0.001),
             dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.0),
             dict(lr=0.01, momentum=0.9, dampening=0.2)]),
])
def test_memberwise_optimizer_equals_torch_optim_member_by_member(kind, settings):
    """The same 60 gradients: the stacked update of every member equals torch.optim's update of
    that member alone (bitwise on this CPU; 1e-6 leaves room for other kernels)."""
    from hydrafit.engine.memberwise import Memberwise

    optim = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[kind]
    gen = torch.Generator().manual_seed(0)
    start, grads = torch.randn(len(settings), 5, 3, generator=gen), torch.randn(60, len(settings), 5, 3, generator=gen)
    stacked = start.clone().requires_grad_()
    population = Memberwise([stacked], kind, settings)
    for grad in grads:
        stacked.grad = grad.clone()
        population.step()
    for k, setting in enumerate(settings):
        alone = start[k].clone().requires_grad_()
        optimizer = optim([alone], **setting)
        for grad in grads:
            alone.grad = grad[k].clone()
            optimizer.step()
        assert torch.allclose(stacked[k], alone, rtol=1e-6, atol=1e-9), (kind, k, (stacked[k] - alone).abs().max())
        assert not torch.equal(alone, start[k])
        mine, theirs = population.member_state(k), optimizer.state_dict()["state"]  # torch.optim's format
        assert mine.keys() == theirs.keys() and all(mine[i].keys() == theirs[i].keys() for i in theirs)
        for name, value in theirs.get(0, {}).items():
            assert torch.allclose(mine[0][name], value, rtol=1e-6, atol=1e-9), name


def member_figure(seed: int, offset: float = 0.0) -> dict:
    """plotting.fit_figure's arguments for a made-up member: noisy data, a prediction `offset` off."""
    import numpy as np

    rng = np.random.default_rng(seed)
    grid = np.linspace(-2, 2, 200)
    x = rng.uniform(-2, 2, 100)
    return dict(grid=grid, truth=grid ** 2 - 2 * grid, x=x, y=x ** 2 - 2 * x + rng.normal(0, 0.1, 100),
                prediction=grid ** 2 - 2 * grid + offset, baseline=grid ** 2 - 2 * grid + 0.01 * seed,
                title=f"epoch 250: truth RMSE {offset:.4f}", truth_label="y = x^2 - 2x",
                x_val=x[:10], y_val=x[:10] ** 2 - 2 * x[:10])


def test_member_figures_share_axes_and_keep_nothing_of_the_member_drawn_before():
    """plotting.fit_png draws each member onto the population's background: a member's image is
    the same whichever was drawn before it, and a member's own curve changes its image."""
    from hydrafit import plotting

    a, b = member_figure(1, offset=3.0), member_figure(2)
    wild = member_figure(3, offset=1e3)
    limits = plotting.shared_limits([a, b, wild])
    assert limits[1][0] < min(a["y"].min(), b["y"].min()) and limits[1][1] < 100  # the wild prediction is cut
    plotting._drawn.clear()
    first = plotting.fit_png(b, limits)
    assert plotting.fit_png(a, limits) != first
    assert plotting.fit_png(b, limits) == first
    assert plotting.fit_png(member_figure(2, offset=0.5), limits) != first
    assert first[:8] == b"\x89PNG\r\n\x1a\n"


def test_member_figures_are_the_pngs_of_what_fit_figure_draws():
    """plotting.encoded's PNG holds exactly the canvas's pixels (PIL reads it, checking its CRCs),
    and fit_png's pictures are what fit_figure draws on the same axes: a member whose title ends
    in another number (drawn onto the backdrop's words), and one whose title differs more (a
    diverged member's epoch: drawn whole)."""
    import io

    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    from hydrafit import plotting

    first, other, diverged = member_figure(4, offset=0.2), member_figure(5, offset=1.3), member_figure(6)
    diverged["title"] = "epoch 37: truth RMSE 12.3456"
    limits = plotting.shared_limits([first, other, diverged])
    plotting._drawn.clear()
    for member in (first, other, diverged):
        png = plotting.fit_png(member, limits)
        picture = Image.open(io.BytesIO(png))
        picture.load()
        assert picture.mode == "RGBA" and picture.size == (600, 400)
        canvas = FigureCanvasAgg(plotting.fit_figure(**member))
        canvas.figure.axes[0].set(xlim=limits[0], ylim=limits[1])
        canvas.draw()
        drawn = np.asarray(canvas.buffer_rgba())
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(plotting.encoded(canvas)))), drawn)
        differ = np.any(np.asarray(picture) != drawn, axis=-1)
        assert differ.mean() < 0.01, member["title"]  # blitted vs drawn at once: antialiased edges
        assert not differ[:30].any(), member["title"]  # the title, to the pixel


@pytest.mark.parametrize("child_dies", [False, True])
def test_jobs_composed_while_torch_imports_come_back_in_order(monkeypatch, child_dies):
    """VectorizedLauncher.compose_all: while torch and Lightning are still to be imported, a
    forked process composes jobs; the launcher joins in once it has imported them, each taking
    the next job not taken; if the forked process dies, the launcher composes what it took."""
    import os
    import sys

    from hydrafit.launch.processes import process_count
    from hydrafit.launch.vectorized import VectorizedLauncher

    if process_count(8, 2) < 2:
        pytest.skip("fork() is not how Python starts processes here")
    parent = os.getpid()

    def compose(self, overrides, idx):
        if child_dies and os.getpid() != parent:
            os._exit(1)
        return overrides, idx, os.getpid()
    monkeypatch.setattr(VectorizedLauncher, "compose", compose)
    monkeypatch.delitem(sys.modules, "pytorch_lightning", raising=False)  # as a sweep from the command line starts
    jobs = [([f"seed={i}"], 10 + i) for i in range(40)]
    composed = VectorizedLauncher(processes=2).compose_all(jobs)
    assert [(o, i) for o, i, _ in composed] == jobs  # each job once, in order
    assert len({pid for *_, pid in composed} - {parent}) <= (0 if child_dies else 1)


@pytest.mark.parametrize("child_dies", [False, True])
def test_jobs_prepared_in_forked_processes_come_back_in_order(monkeypatch, child_dies):
    """VectorizedLauncher.prepare_all: forked processes prepare jobs and send back each member's
    datamodule and module; the jobs of one that dies are prepared by the launcher itself. An
    invalid job comes back without task and member."""
    import os

    from hydrafit.launch.processes import process_count
    from hydrafit.launch.vectorized import VectorizedLauncher
    from hydrafit.engine.population import Member

    if process_count(64, 3) < 3:
        pytest.skip("fork() is not how Python starts processes here")
    parent = os.getpid()

    def prepare(self, config, task):
        if child_dies and os.getpid() != parent and config == 5:
            os._exit(1)
        if config == 6:
            return None, None
        return task, Member(task, torch.full((2,), float(config)), f"module {config}")  # a tensor travels by value
    monkeypatch.setattr(VectorizedLauncher, "prepare", prepare)
    configs, tasks = list(range(40)), [f"task {i}" for i in range(40)]
    built = VectorizedLauncher(processes=3).prepare_all(configs, tasks)
    assert tasks == [f"task {i}" if i != 6 else None for i in range(40)]
    assert built[6] is None
    for i, member in enumerate(built):
        if i != 6:
            assert member.cfg == f"task {i}" and member.module == f"module {i}"
            assert member.datamodule.tolist() == [i, i]


def test_a_writer_process_that_dies_stops_the_population_with_one_error():
    """share(lost=...), as write_members uses it: a member written twice would hold two
    TensorBoard event files, so a dead writer is an error, not work redone here."""
    import multiprocessing
    import os

    from hydrafit.launch.processes import process_count, share

    if process_count(64, 2) < 2:
        pytest.skip("fork() is not how Python starts processes here")
    parent, dying = os.getpid(), multiprocessing.get_context("fork").Event()

    def work(item):
        if os.getpid() != parent:
            dying.set()
            os._exit(3)
        return item

    def lost(process):
        raise RuntimeError(f"a writer died (exit code {process.exitcode})")
    with pytest.raises(RuntimeError, match=r"a writer died \(exit code 3\)"):
        share(range(40), work, 2, meanwhile=lambda: dying.wait(60), lost=lost)
    dying.clear()  # without `lost`, its items are done here
    assert share(range(40), work, 2, meanwhile=lambda: dying.wait(60)) == list(range(40))


def test_job_record_is_what_omegaconf_writes():
    """The vectorised launcher's .hydra/ YAML and hparams.yaml (libyaml's emitter) are the text
    OmegaConf writes."""
    from omegaconf import OmegaConf

    from hydrafit.compat.omegaconf import yaml_text
    from hydrafit.config.compose import compose

    config = compose(["seed=3", "dataset=expression", "dataset.expr='sin(3*x) + 0.5'", "+notes='1.0'"], run_dir="/tmp/x")
    assert yaml_text({"hydra": config.hydra}) == OmegaConf.to_yaml(OmegaConf.masked_copy(config, "hydra"))
    task = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    assert yaml_text(task) == OmegaConf.to_yaml(task) and "'1.0'" in yaml_text(task)
    params = OmegaConf.to_container(task, resolve=True)
    assert yaml_text(params) == OmegaConf.to_yaml(OmegaConf.create(params))


def test_frozen_member_keeps_its_values_and_the_others_go_on():
    from hydrafit.engine.memberwise import Memberwise

    params = torch.ones(3, 4, requires_grad=True)
    active = torch.tensor([True, False, True])
    optimizer = Memberwise([params], "adam", [dict(lr=0.1)] * 3, active=active)
    optimizer.frozen = True
    params.grad = torch.ones(3, 4)
    optimizer.step()
    assert torch.equal(params[1], torch.ones(4)) and not torch.equal(params[0], torch.ones(4))
    assert torch.equal(optimizer.state[params]["exp_avg"][1], torch.zeros(4))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The README's 8-job lr x seed grid, vectorised, its run directories written by two processes
    (the second forked), and two of its jobs run with the basic launcher."""
    cwd = tmp_path_factory.mktemp("vectorized")
    vectorized = run_cli(*readme("seed=1,2,3,4"), *SHORT, "hydra.launcher.processes=2", f"hydra.sweep.dir={cwd / 'vec'}",
                         cwd=cwd)
    basic = run_cli("-m", "optimizer.lr=0.01,0.03", "seed=4", *SHORT, f"hydra.sweep.dir={cwd / 'basic'}", cwd=cwd)
    return cwd, vectorized, basic


def test_grid_is_one_population_and_every_job_a_complete_run_dir(grid):
    cwd, proc, _ = grid
    sweep_dir = cwd / "vec"
    assert "vectorized: 8 jobs -> 1 population of 8" in proc.stdout + proc.stderr
    assert [r["status"] for r in rows(sweep_dir)] == ["completed"] * 8
    for n in range(8):
        job = sweep_dir / str(n)
        assert FILES <= {p.name for p in job.iterdir()}, n
        assert {p.name for p in (job / ".hydra").iterdir()} == {"config.yaml", "overrides.yaml", "hydra.yaml"}
        assert read_metrics(job)["epochs"] == 40 and "Trained as member" in (job / "train.log").read_text()
        checkpoint = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
        assert checkpoint["epoch"] == 40 and checkpoint["global_step"] == 40
        assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == [0.01, 0.03][n // 4]
        tensors = [*checkpoint["state_dict"].values(),
                   *(t for s in checkpoint["optimizer_states"][0]["state"].values() for t in s.values())]
        assert all(t.untyped_storage().nbytes() == t.nbytes for t in tensors)  # one member's, not the stack's
    (events,) = (sweep_dir / "5" / "tensorboard").iterdir()
    tb = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    tb.Reload()
    assert [e.step for e in tb.Scalars("train/loss")] == list(range(40))
    assert [e.step for e in tb.Images("fit")] == [40]
    assert tb.Scalars("truth/rmse")[-1].value == pytest.approx(read_metrics(sweep_dir / "5")["truth/rmse"], rel=1e-6)
    hparams = plugin_data_pb2.HParamsPluginData.FromString(
        tb.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info.hparams
    assert hparams["optimizer/lr"].number_value == 0.03 and hparams["seed"].number_value == 2
    assert (sweep_dir / "sweep.png").is_file() and (sweep_dir / "summary.md").is_file()


def test_jobs_equal_the_same_jobs_run_with_the_basic_launcher(grid):
    """Jobs #3 and #7 (seed 4, lr 0.01 and 0.03) against those jobs alone: the same config record,
    metrics within 1e-5 relative (measured: ~1e-7), plots of the same size."""
    from PIL import Image

    cwd = grid[0]
    for vec, basic in ((cwd / "vec" / "3", cwd / "basic" / "0"), (cwd / "vec" / "7", cwd / "basic" / "1")):
        assert (vec / ".hydra" / "config.yaml").read_text() == (basic / ".hydra" / "config.yaml").read_text()
        assert (vec / ".hydra" / "overrides.yaml").read_text() == (basic / ".hydra" / "overrides.yaml").read_text()
        mine, alone = read_metrics(vec), read_metrics(basic)
        for key in ("train/mse", "truth/rmse"):
            assert close(mine[key], alone[key]), (key, mine[key], alone[key])
        assert mine["baseline/truth_rmse"] == alone["baseline/truth_rmse"]  # the same data, exactly
        assert Image.open(vec / "fit.png").size == Image.open(basic / "fit.png").size


def test_eval_and_resume_read_a_vectorized_job_as_a_basic_one(grid):
    """hydrafit-eval reproduces the job's metrics from its last.ckpt; resume= trains it on to 60
    epochs, and the result equals the basic-launcher job resumed the same way."""
    cwd = grid[0]
    job, twin = cwd / "vec" / "7", cwd / "basic" / "1"
    run_cli(f"run={job}", script="hydrafit-eval", cwd=cwd)
    evaluated = read_metrics(job / "eval" / "last")
    assert evaluated["truth/rmse"] == read_metrics(job)["truth/rmse"] and evaluated["epochs"] == 40
    run_cli(f"resume={job}", "trainer.max_epochs=60", cwd=cwd)
    hydrafit.fit([f"resume={twin}", "trainer.max_epochs=60"])  # the reference, in-process
    mine, alone = read_metrics(job), read_metrics(twin)
    assert mine["status"] == "completed" and mine["epochs"] == 60
    for key in ("train/mse", "truth/rmse"):
        assert close(mine[key], alone[key]), (key, mine[key], alone[key])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """The README's SGD grid over two widths: one population of both widths with two diverging
    members, and an invalid lr; then the healthy jobs alone (the basic launcher)."""
    cwd = tmp_path_factory.mktemp("mixed")
    proc = run_cli(*readme("model.hidden_dims=[8],[16]"), *SHORT, f"hydra.sweep.dir={cwd / 'vec'}",
                   cwd=cwd, check=False)
    alone = run_cli("-m", "optimizer=sgd", "optimizer.lr=0.01",
                    "model.hidden_dims=[8],[16]", *SHORT, f"hydra.sweep.dir={cwd / 'alone'}", cwd=cwd)
    return cwd, proc, alone


def test_widths_share_a_population_and_diverging_members_leave_the_others_alone(mixed):
    cwd, proc, alone = mixed
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "vectorized: 6 jobs -> 1 population of 4" in proc.stdout + proc.stderr
    statuses = {(r["optimizer.lr"], r["model.hidden_dims"]): r["status"] for r in rows(cwd / "vec")}
    assert statuses == {("0.01", "[8]"): "completed", ("0.01", "[16]"): "completed",
                        ("100", "[8]"): "diverged", ("100", "[16]"): "diverged",
                        ("-1", "[8]"): "failed", ("-1", "[16]"): "failed"}
    assert "4 of 6 jobs did not complete" in proc.stderr and "optimizer.lr=100" in proc.stderr
    assert "optimizer.lr must be > 0, got -1" in proc.stderr
    for vec, single in ((cwd / "vec" / "0", cwd / "alone" / "0"), (cwd / "vec" / "1", cwd / "alone" / "1")):
        mine, theirs = read_metrics(vec), read_metrics(single)
        for key in ("train/mse", "truth/rmse"):
            assert close(mine[key], theirs[key]), (key, mine[key], theirs[key])
    diverged = read_metrics(cwd / "vec" / "2")
    assert diverged["status"] == "diverged" and "became" in diverged["error"] and diverged["epochs"] < 40
    assert not (cwd / "vec" / "2" / "checkpoints" / "last.ckpt").exists()  # diverged before the first periodic save


def test_readme_vectorized_commands_are_the_ones_tested():
    assert len([c for c in sweep_commands() if "hydra/launcher=vectorized" in c]) == 2


def test_minibatch_population_equals_its_members_trained_alone(tmp_path):
    """Shuffled mini-batches, several steps a Lightning batch: each member draws its own
    single run's batches (in-process, no run directories: callbacks=none logger=none)."""
    from hydrafit.metrics import final_metrics
    from hydrafit.config.compose import compose_job
    from hydrafit.engine.population import Member, fit, load_results
    from hydrafit.engine.single import build, build_model

    common = ["dataset.batch_size=32", "dataset.steps_per_batch=3", "trainer.max_epochs=15",
              "callbacks=none", "logger=none"]
    jobs = [["seed=1", "optimizer.lr=0.01"], ["seed=2", "optimizer.lr=0.03", "optimizer.betas=[0.8,0.99]"]]
    configs = [compose_job([*job, *common], tmp_path / str(i)) for i, job in enumerate(jobs)]
    members = [Member(cfg, *build_model(cfg, announce=False)) for cfg in configs]
    outcome = fit(members, tmp_path)
    load_results(members, outcome)
    assert outcome.epochs == 15 and outcome.losses.shape == (15, 2) and outcome.steps_per_epoch == 4
    for member in members:
        datamodule, module, trainer = build(member.cfg)
        trainer.fit(module, datamodule=datamodule)
        alone, mine = final_metrics(module.net, datamodule), final_metrics(member.module.net, member.datamodule)
        for key in ("train/mse", "truth/rmse"):
            assert close(mine[key], alone[key]), (key, mine[key], alone[key])


def test_ctrl_c_interrupts_every_member_and_resume_sweep_completes_them(tmp_path):
    """SIGINT once the population trains (its progress bar has appeared, so GracefulStop's handler,
    installed just before, is in place): every member is `interrupted` with its last.ckpt at the
    epoch it stopped, exit 130; resume_sweep= with the launcher reruns and completes them."""
    import signal
    import subprocess

    from conftest import BIN

    sweep_dir = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=vectorized", "optimizer.lr=0.01,0.03", "trainer.max_epochs=600"]
    proc = subprocess.Popen([str(BIN / "hydrafit-train"), *args, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "Training:" not in seen and proc.poll() is None:
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-3000:]
    for n in range(2):
        metrics = read_metrics(sweep_dir / str(n))
        assert metrics["status"] == "interrupted" and metrics["epochs"] < 600, metrics
        assert torch.load(sweep_dir / str(n) / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == metrics["epochs"]
    run_cli("-m", f"resume_sweep={sweep_dir}", "hydra/launcher=vectorized", cwd=tmp_path)
    assert [r["status"] for r in rows(sweep_dir)] == ["completed", "completed"]
