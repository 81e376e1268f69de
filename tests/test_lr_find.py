"""lr_find=true: Lightning's learning-rate finder picks the lr, the run trains with it."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

import hydrafit
from conftest import run_cli

SHORT = ["trainer.max_epochs=20", "callbacks.fit_plot.n_images=0"]


def test_lr_find_plots_records_and_trains_with_the_suggestion(tmp_path):
    found = hydrafit.fit([*SHORT, "lr_find=true"], run_dir=tmp_path / "found")
    suggestion = found.metrics["lr_find/suggestion"]
    assert 1e-8 < suggestion < 1 and suggestion != 0.03  # Lightning's range; not the configured lr
    with Image.open(found.run_dir / "lr_find.png") as plot:
        assert plot.format == "PNG" and plot.width > 100
    assert not list(found.run_dir.glob(".lr_find*"))  # the finder's checkpoint is gone
    checkpoint = torch.load(found.run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == suggestion
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == suggestion
    assert f"lr={suggestion:g}, lr_find's suggestion" in (found.run_dir / "train.log").read_text()
    # resumed (through the API: its .hydra/ record is the CLI's), it keeps the lr without a new search
    resumed = hydrafit.fit([f"resume={found.run_dir}", "trainer.max_epochs=25"])
    assert resumed.run_dir == found.run_dir and resumed.metrics["epochs"] == 25
    assert resumed.metrics["lr_find/suggestion"] == suggestion
    assert torch.load(found.run_dir / "checkpoints" / "last.ckpt", weights_only=True)[
        "optimizer_states"][0]["param_groups"][0]["lr"] == suggestion
    # the finder leaves the model as it was: the run is the one optimizer.lr=<suggestion> trains
    direct = hydrafit.fit([*SHORT, f"optimizer.lr={suggestion!r}"], run_dir=tmp_path / "direct")
    assert {k: found.metrics[k] for k in ("train/mse", "truth/rmse")} == \
           {k: direct.metrics[k] for k in ("train/mse", "truth/rmse")}


def test_lr_find_refuses_lbfgs_and_sweeps(tmp_path):
    with pytest.raises(hydrafit.ConfigError, match="^lr_find: .* L-BFGS's line search"):
        hydrafit.fit(["lr_find=true", "optimizer=lbfgs"], run_dir=tmp_path / "lbfgs")
    assert not (tmp_path / "lbfgs").exists()
    proc = run_cli("-m", "lr_find=true", "optimizer.lr=0.01,0.03", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and not (tmp_path / "outputs").exists()
    assert proc.stderr.strip().splitlines() == [
        "hydrafit-train: error: lr_find: finds the lr of one run; it cannot be combined with --multirun "
        "(sweep optimizer.lr instead, or run lr_find=true once without -m)"]
