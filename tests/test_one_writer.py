"""One writer per run file: a vectorised member's run directory holds what the same job run by the
basic launcher holds: the same files, metrics.json keys, checkpoint keys and TensorBoard tags.

Where they differ by design, report/figure.py says why: a member's fit.png is drawn on axes its
population shares (the images have the same size, not the same pixels)."""
from __future__ import annotations

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import run_cli

# 60 epochs with a periodic save every 20: best.ckpt and last.ckpt both exist, as in a default run.
ARGS = ["trainer.max_epochs=60", "callbacks.model_checkpoint.every_n_epochs=20", "callbacks.fit_plot.n_images=2",
        "~callbacks.progress_bar"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Job #1 (seed 2) of a vectorised 2-job sweep, and the same job with the basic launcher."""
    cwd = tmp_path_factory.mktemp("one_writer")
    run_cli("-m", "hydra/launcher=vectorized", "seed=1,2", *ARGS, f"hydra.sweep.dir={cwd / 'vec'}", cwd=cwd)
    run_cli("-m", "seed=1,2", *ARGS, f"hydra.sweep.dir={cwd / 'basic'}", cwd=cwd)
    return cwd / "vec" / "1", cwd / "basic" / "1"


def files(run_dir) -> set[str]:
    """Every file's path in the run dir, event files by their directory (their names hold a time)."""
    return {str(p.relative_to(run_dir)) if not p.name.startswith("events.out.tfevents")
            else str(p.parent.relative_to(run_dir)) + "/events.out.tfevents.*"
            for p in run_dir.rglob("*") if p.is_file()}


def tags(run_dir) -> dict:
    (events,) = run_dir.glob("tensorboard/*/events.out.tfevents.*")
    tb = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    tb.Reload()
    return {kind: sorted(names) for kind, names in tb.Tags().items() if isinstance(names, list) and names}


def test_member_and_single_run_leave_the_same_files(pair):
    vec, basic = pair
    assert files(vec) == files(basic)
    assert {"checkpoints/best.ckpt", "checkpoints/last.ckpt", "fit.png", "metrics.json"} <= files(vec)


def test_same_metrics_keys_checkpoint_keys_and_tensorboard_tags(pair):
    vec, basic = pair
    assert json.loads((vec / "metrics.json").read_text()).keys() == json.loads((basic / "metrics.json").read_text()).keys()
    for name in ("last", "best"):
        ours, theirs = (torch.load(d / "checkpoints" / f"{name}.ckpt", weights_only=True) for d in pair)
        assert ours.keys() == theirs.keys(), name
        assert ours["state_dict"].keys() == theirs["state_dict"].keys()
        assert ours["epoch"] == theirs["epoch"], name
        for key, value in ours["state_dict"].items():
            assert torch.allclose(value, theirs["state_dict"][key], rtol=1e-4, atol=1e-6), (name, key)
    assert tags(vec) == tags(basic)
