"""Checks Hydra runs before it creates any directory (a Hydra callback, conf/hydra/default.yaml).

Hydra creates the run dir and writes .hydra/ before the task function starts, and reports a
failure to do so with a traceback. These checks turn the two mistakes that happen there, an
output dir that cannot be written and `resume=` pointing at something that is not a run, into
one line and exit code 2, with nothing created.
"""
from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def fail(message: str) -> None:
    print(f"hydrafit-train: error: {message}", file=sys.stderr)
    sys.exit(2)


def check_writable(key: str, directory: str) -> None:
    """The directory is writable, or can be created, and nothing is created here: an existing
    one (resume=, resume_sweep=) is only asked; otherwise a temp file is opened and deleted in
    its nearest existing parent (what Hydra will create it in). Raises ConfigError."""
    from hydrafit.config import ConfigError

    path = Path(directory).absolute()
    if path.is_dir():
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{key}: cannot write to '{directory}' (permission denied)")
        return
    parent = next(p for p in path.parents if p.exists())
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise ConfigError(f"{key}: cannot write to '{directory}' ({error.strerror or type(error).__name__})") from None


def check_run(config: DictConfig, run_dir: str) -> None:
    """A single run's checks before its directory exists (hydrafit-train and hydrafit.fit)."""
    from hydrafit.config import ConfigError

    resume = config.get("resume")
    if resume is not None and not (Path(resume) / ".hydra" / "config.yaml").is_file():
        raise ConfigError(f"resume: '{resume}' is not a hydrafit run directory (no .hydra/config.yaml)")
    check_writable("hydra.run.dir", run_dir)


def check_multirun(config: DictConfig) -> None:
    """A sweep's checks before its directory exists: what no job of it could run."""
    from hydrafit.config import check_multirun_strategy, refuse_lr_find_in_sweeps

    check_multirun_strategy(config.trainer)  # a job that picks DDP through a sweep: validate()
    refuse_lr_find_in_sweeps(config)
    check_writable("hydra.sweep.dir", config.hydra.sweep.dir)


class Preflight(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        failing_in_one_line(check_run, config, config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        failing_in_one_line(check_multirun, config)


def failing_in_one_line(check, *args) -> None:
    """Run `check`; a ConfigError ends the process with one line and exit code 2."""
    from hydrafit.config import ConfigError

    try:
        check(*args)
    except ConfigError as error:
        fail(str(error))


def composition_problem(overrides: list[str]) -> str | None:
    """What Hydra would say about composing conf/train.yaml with `overrides`, as one line that
    names the key and what is allowed (Hydra's own message spans several lines), or None."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException, MissingConfigException

    def composed(overrides):
        with initialize_config_module("hydrafit.conf", version_base="1.3"):
            return compose("train", overrides=overrides, return_hydra_config=True)

    try:
        composed(overrides)
        return None
    except MissingConfigException as error:  # model=transformer
        missing = re.search(r"Could not find '(.+)/([^/']+)'", str(error))
        options = re.findall(r"^\t(\S+)$", str(error), re.M)
        if missing and options:
            return f"{missing[1]}={missing[2]}: no such option; available: {', '.join(options)}"
        return str(error).splitlines()[0]
    except HydraException as error:
        bad = re.match(r"Could not override '(.+)'", str(error))
        if not bad:
            return " ".join(str(error).split("\n")[:1])
        from omegaconf import OmegaConf

        from hydrafit.config import unknown_key  # model.hiden=3: suggest the close name

        parent = bad[1].rpartition(".")[0]
        rest = composed([o for o in overrides if not o.startswith(f"{bad[1]}=")])
        node = OmegaConf.select(rest, parent) if parent else rest
        return str(unknown_key(bad[1], [str(k) for k in node] if node is not None else []))


def explain_composition_errors(entry):
    """Decorates the Hydra entry point: a run whose overrides Hydra cannot compose (a typo in a
    key, an option that does not exist) stops with one line and exit code 2. Command lines with
    flags (--cfg, -m, --help, ...) go to Hydra as they are."""
    @functools.wraps(entry)
    def checked(*args, **kwargs):
        overrides = sys.argv[1:]
        if overrides and not any(arg.startswith("-") for arg in overrides):
            if problem := composition_problem(overrides):
                fail(problem)
        return entry(*args, **kwargs)
    return checked
