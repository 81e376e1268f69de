"""Every key in conf/ is read somewhere that says so: an argument of the `_target_` it sits under,
a key hydrafit.config.view reads by name (KEYS), or a key other keys interpolate. A key renamed in
conf/ then fails here (or in validation) rather than changing a run in silence."""
from __future__ import annotations

import re

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from conftest import REPO
from hydrafit.config.compose import compose, job_config
from hydrafit.config.validate import accepted_arguments
from hydrafit.config.view import KEYS, RunView

GROUPS = ("callbacks", "dataset", "experiment", "hparams_search", "logger", "model", "optimizer", "scheduler",
          "trainer")
# Keys the view reads with a default, which conf/ need not set (Lightning's Trainer defaults).
OPTIONAL = {"trainer.profiler", "trainer.accumulate_grad_batches", "trainer.gradient_clip_algorithm", "trainer.check_val_every_n_epoch", "trainer.strategy", "resume_sweep"}


def options() -> list[list[str]]:
    """The default composition and one with each option of each config group."""
    runs = [[]]
    for group in GROUPS:
        for path in sorted((REPO / "conf" / group).glob("*.yaml")):
            runs.append([f"{group}={path.stem}"] + (["dataset.path=data.csv"] if (group, path.stem) == ("dataset", "csv") else []))
    return runs


@pytest.fixture(scope="module")
def composed(tmp_path_factory) -> dict[str, dict]:
    run_dir = tmp_path_factory.mktemp("view")
    return {" ".join(o) or "defaults": OmegaConf.to_container(job_config(compose(o, run_dir)), resolve=False)
            for o in options()}


def keys(tree: dict, path: str = "", target: str | None = None):
    """(dotted path, key, the `_target_` of the nearest node above it, whether it holds a node) of
    each key of the tree, nodes and leaves."""
    own = tree.get("_target_", target)
    for key, value in tree.items():
        here = f"{path}.{key}" if path else str(key)
        node = isinstance(value, dict) and bool(value)
        yield here, str(key), own, node
        if node:
            yield from keys(value, here, own)


def test_every_key_in_conf_is_consumed_by_a_target_or_read_by_the_view(composed):
    interpolated = set()
    for tree in composed.values():
        interpolated |= set(re.findall(r"\$\{([\w.]+)\}", str(tree)))
    unread = set()
    for name, tree in composed.items():
        for path, key, target, node in keys(tree):
            if node or key.startswith("_") or path in KEYS or path in interpolated:
                continue
            accepted = accepted_arguments(get_object(target)) if target else frozenset()
            if accepted is None or key in accepted:  # a target taking **kwargs takes any key
                continue
            unread.add(f"{path} ({name})")
    assert not unread, sorted(unread)


def test_every_key_the_view_reads_is_in_some_composition(composed):
    paths = {path for tree in composed.values() for path, *_ in keys(tree)}
    assert set(KEYS) - OPTIONAL <= paths, sorted(set(KEYS) - OPTIONAL - paths)


def test_the_view_is_built_from_every_composition(tmp_path):
    for overrides in options():
        view = RunView.of(job_config(compose(overrides, tmp_path / "run")))
        assert view.max_epochs >= 1 and view.callbacks.names == view.callbacks.names
    default = RunView.of(job_config(compose([], tmp_path / "run")))
    assert default.callbacks.checkpoint_every == 100 and default.callbacks.keeps_best
    assert default.callbacks.metrics_file == tmp_path / "run" / "metrics.json"
    assert default.seed == 12345 and default.optimized_metric == "truth/rmse" and not default.scheduler
