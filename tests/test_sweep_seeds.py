"""A sweep over seeds, as a user runs it: a real 2 x 3 grid of optimizer.lr x seed. summary.md's
table over seeds and sweep.png's band are checked against the jobs' own metrics.json, and
`tensorboard --logdir <sweep dir>` is asked, through its HTTP API, which columns its HPARAMS
table opens on."""
from __future__ import annotations

import json
import math
import socket
import statistics
import subprocess
import time
import urllib.request

import pytest

from conftest import BIN, read_metrics, run_cli

LRS, SEEDS = ("0.01", "0.03"), ("1", "2", "3")


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory):
    """The README's lr x seed sweep, 20 epochs a job."""
    from test_sweeps import readme

    args = readme("-m optimizer.lr=0.01,0.03 seed=1,2,3")
    assert args[2:] == ["optimizer.lr=" + ",".join(LRS), "seed=" + ",".join(SEEDS)]
    cwd = tmp_path_factory.mktemp("seeds")
    run_cli(*args[1:], "trainer.max_epochs=20", "callbacks.fit_plot.n_images=0", "hydra.sweep.dir=sweep", cwd=cwd)
    return cwd / "sweep"


def job_metrics(sweep_dir) -> dict[str, list[dict]]:
    """lr -> the metrics.json of its seeds, from the job directories (.hydra/overrides.yaml)."""
    import yaml

    by_lr = {lr: [] for lr in LRS}
    for job in sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))
        by_lr[overrides["optimizer.lr"]].append(read_metrics(job))
    return by_lr


def test_summary_md_aggregates_each_metric_over_seeds(seed_sweep):
    by_lr = job_metrics(seed_sweep)
    md = (seed_sweep / "summary.md").read_text()
    over_seeds = md.split("## Over seeds")[1].split("## Jobs")[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in over_seeds.splitlines() if line.startswith("| ")]
    header, rows = rows[0], rows[1:]
    assert header[:4] == ["", "optimizer.lr", "seeds", "truth/rmse (mean ± std)"]
    assert len(rows) == 2
    means = {}
    for row in rows:
        cells = dict(zip(header, row))
        runs = by_lr[cells["optimizer.lr"]]
        assert cells["seeds"] == "3/3"
        for metric in ("truth/rmse", "train/mse", "baseline/truth_rmse"):
            values = [m[metric] for m in runs]
            mean_text, std_text = cells[f"{metric} (mean ± std)"].split(" ± ")
            assert float(mean_text) == pytest.approx(statistics.fmean(values), rel=1e-3)
            assert float(std_text) == pytest.approx(statistics.stdev(values), rel=1e-1)
        means[cells["optimizer.lr"]] = statistics.fmean(m["truth/rmse"] for m in runs)
    best = min(means, key=means.get)
    assert rows[0][0] == "★" and rows[0][1] == best and rows[1][0] == ""  # best mean first, marked
    assert md.split("## Jobs")[1].count("| ★ |") == 1  # the per-job table keeps its own best


def test_seed_groups_are_exact_and_direction_is_respected(seed_sweep):
    from hydrafit.sweeps.records import collect
    from hydrafit.sweeps.tables import seed_groups

    by_lr = job_metrics(seed_sweep)
    jobs = collect(seed_sweep)
    low, high = (seed_groups(jobs, ["optimizer.lr", "seed"], "truth/rmse", maximize=m) for m in (False, True))
    assert [g.values["optimizer.lr"] for g in low] == [g.values["optimizer.lr"] for g in reversed(high)]
    for group in low:
        values = [m["truth/rmse"] for m in by_lr[group.values["optimizer.lr"]]]
        assert group.stats("truth/rmse") == (statistics.fmean(values), statistics.stdev(values), 3)
    assert seed_groups(jobs, ["optimizer.lr"], "truth/rmse") == []  # no seed swept: no table


def test_sweep_png_draws_the_mean_and_a_band_over_seeds(seed_sweep):
    from matplotlib.collections import PolyCollection
    from PIL import Image

    from hydrafit.sweeps.figure import sweep_figure
    from hydrafit.sweeps.records import collect

    with Image.open(seed_sweep / "sweep.png") as image:
        assert image.format == "PNG" and image.size[0] > 600 and image.size[1] > 600
    by_lr = job_metrics(seed_sweep)
    figure = sweep_figure(collect(seed_sweep), ["optimizer.lr", "seed"], "truth/rmse", None)
    chart, *panels = figure.axes
    assert chart.get_title() == "truth/rmse: mean ± 1 std over 3 seeds, against optimizer.lr"
    (line,) = chart.get_lines()
    assert list(line.get_xdata()) == [float(lr) for lr in LRS]
    expected = [statistics.fmean(m["truth/rmse"] for m in by_lr[lr]) for lr in LRS]
    assert list(line.get_ydata()) == pytest.approx(expected, rel=1e-12)
    (band,) = [c for c in chart.collections if isinstance(c, PolyCollection)]
    top = max(band.get_paths()[0].vertices[:, 1])
    spread = [statistics.stdev(m["truth/rmse"] for m in by_lr[lr]) for lr in LRS]
    assert top == pytest.approx(max(m + s for m, s in zip(expected, spread)), rel=1e-9)
    assert len(panels) == 2 and all("median of 3 seeds" in ax.get_title() for ax in panels)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def post(port: int, route: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://localhost:{port}/data/plugin/hparams/{route}", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-XSRF-Protected": "1"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_tensorboard_hparams_table_opens_on_the_swept_keys_and_optimized_metric(seed_sweep):
    """TensorBoard's own server (its default data provider), asked as its HPARAMS tab asks:
    the hyperparameters it ticks are the first five, the metrics the first five."""
    port = free_port()
    server = subprocess.Popen([str(BIN / "tensorboard"), "--logdir", str(seed_sweep), "--port", str(port),
                               "--host", "localhost"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300  # start-up and first load; a bound, not a measurement
        experiment = {}
        while not experiment.get("metricInfos") and time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                experiment = post(port, "experiment", {"experimentName": ""})
            except OSError:  # not listening yet
                time.sleep(0.2)
        names = [h["name"] for h in experiment["hparamInfos"]]
        assert names[:2] == ["optimizer/lr", "seed"]
        assert [h.get("differs", False) for h in experiment["hparamInfos"][:3]] == [True, True, False]
        assert {"dataset/n_points", "model/hidden_dims", "optimizer/betas"} <= set(names[2:])
        assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["truth/rmse", "train/mse",
                                                                         "baseline/truth_rmse"]
        groups = post(port, "session_groups", {
            "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
            "colParams": [], "startIndex": 0, "sliceSize": 100})["sessionGroups"]
        by_lr = job_metrics(seed_sweep)
        assert len(groups) == 6
        for group in groups:
            lr, seed = group["hparams"]["optimizer/lr"], group["hparams"]["seed"]
            (value,) = [m["value"] for m in group["metricValues"] if m["name"]["tag"] == "truth/rmse"]
            recorded = by_lr[f"{lr:g}"][SEEDS.index(f"{seed:g}")]["truth/rmse"]
            assert math.isclose(value, recorded, rel_tol=1e-6)
    finally:
        server.terminate()
        server.wait(timeout=60)
