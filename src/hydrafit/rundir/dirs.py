"""Run and sweep directories that are never shared.

Hydra names them `${now:%Y-%m-%d}_${now:%H-%M-%S}`, so two runs started in the same second got
one directory and the later one overwrote the earlier (hydra #2925: Hydra cannot make directory
creation atomic). Here the name is claimed by creating the directory: `os.mkdir` either creates
it or fails because it exists, in one step, so of any number of processes starting together each
gets its own (`<date>_<time>`, then `<date>_<time>_01`, `_02`, ... in the same second; `ls` still
sorts them by start time). conf/hydra/default.yaml names them through hydrafit.config.resolvers.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


CLAIMED: list[Path] = []  # directories this process created, for release_unclaimed


def release_unclaimed() -> None:
    """Remove the directories this process claimed that are still empty: a command refused
    before it wrote anything leaves nothing behind (rmdir fails on a non-empty directory)."""
    for path in CLAIMED:  # with the parents that were made for it, deepest first
        try:
            path.rmdir()
        except OSError:
            pass


def claim_new_dir(parent: str, stamp: str) -> str:
    """Create and return `<parent>/<stamp>`, or the first free `<stamp>_NN` beside it. If the
    parent cannot be written, return the name uncreated: Preflight then says why in one line."""
    base = Path(parent) / stamp
    made = [p for p in base.parents if not p.exists()]  # outputs/, outputs/runs/ on a first run
    for n in range(10_000):
        path = base if n == 0 else base.with_name(f"{stamp}_{n:02d}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()  # atomic: exactly one process creates a given name
            CLAIMED.extend([path, *made])
            return str(path)
        except FileExistsError:
            continue
        except OSError:
            return str(path)
    raise RuntimeError(f"no free directory name under {parent} for {stamp}")


def new_run_dir(resume, parent: str) -> str:
    """The directory to continue (`resume`), or a new one under `parent`."""
    if resume is not None:
        return str(resume)
    return claim_new_dir(parent, time.strftime("%Y-%m-%d_%H-%M-%S"))


def holds_results(path: Path) -> str | None:
    """'a run' or 'a sweep' if `path` holds one (what a refused command must not touch), else None."""
    if (path / ".hydra" / "config.yaml").is_file() or (path / "metrics.json").is_file():
        return "a run"
    if (path / "multirun.yaml").is_file() or any(p.name.isdigit() for p in path.iterdir() if p.is_dir()):
        return "a sweep"
    return None


def given_dir(config, key: str) -> str | None:
    """The value of hydra.run.dir / hydra.sweep.dir when the command line sets it, else None."""
    given = [str(o) for o in config.hydra.overrides.hydra if str(o).startswith(f"{key}=")]
    return given[-1].split("=", 1)[1] if given else None


def ddp_child(config) -> bool:
    """A rank > 0 that Lightning's subprocess DDP launcher started: it re-runs the command line
    with `hydra.run.dir=<rank 0's dir>` (the facts file), and must join that directory."""
    return (os.environ.get("LOCAL_RANK", "0") != "0"
            and str(config.hydra.job.name).startswith("train_ddp_process_"))
