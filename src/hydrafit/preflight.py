"""Checks Hydra runs before it creates any directory (a Hydra callback, conf/hydra/default.yaml).

Hydra creates the run dir and writes .hydra/ before the task function starts, and reports a
failure to do so with a traceback. These checks turn the two mistakes that happen there, an
output dir that cannot be written and `resume=` pointing at something that is not a run, into
one line and exit code 2, with nothing created.
"""
from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def fail(message: str) -> None:
    print(f"hydrafit-train: error: {message}", file=sys.stderr)
    sys.exit(2)


def check_writable(key: str, directory: str) -> None:
    """The directory exists or can be created, and a file can be written in it."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".hydrafit-write-test"
        probe.touch()
        probe.unlink()
    except OSError as error:
        fail(f"{key}: cannot write to '{directory}' ({error.strerror or type(error).__name__})")


class Preflight(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        resume = config.get("resume")
        if resume is not None and not (Path(resume) / ".hydra" / "config.yaml").is_file():
            fail(f"resume: '{resume}' is not a hydrafit run directory (no .hydra/config.yaml)")
        check_writable("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from hydrafit.config import ConfigError, check_multirun_strategy

        try:  # refused up front; a job that picks DDP through a sweep is refused by validate()
            check_multirun_strategy(config.trainer)
        except ConfigError as error:
            fail(str(error))
        check_writable("hydra.sweep.dir", config.hydra.sweep.dir)
