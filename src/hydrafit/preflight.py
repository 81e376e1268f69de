"""Checks Hydra runs before it creates any directory (a Hydra callback, conf/hydra/default.yaml).

Hydra creates the run dir and writes .hydra/ before the task function starts, and reports a
failure to do so with a traceback. These checks turn the two mistakes that happen there, an
output dir that cannot be written and `resume=` pointing at something that is not a run, into
one line and exit code 2, with nothing created; so does an explicit hydra.run.dir or
hydra.sweep.dir that already holds results (hydrafit.run_dirs).
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

from hydrafit.run_dirs import refuse_existing


def fail(message: str) -> None:
    """One line on stderr, exit code 2, and no run or sweep directory left behind for it."""
    from hydrafit.run_dirs import release_unclaimed

    release_unclaimed()
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
    refuse_existing(config, "hydra.run.dir")
    check_writable("hydra.run.dir", run_dir)


def check_multirun(config: DictConfig) -> None:
    """A sweep's checks before its directory exists: what no job of it could run."""
    from hydrafit.config import check_multirun_strategy, refuse_lr_find_in_sweeps

    check_multirun_strategy(config.trainer)  # a job that picks DDP through a sweep: validate()
    refuse_lr_find_in_sweeps(config)
    refuse_existing(config, "hydra.sweep.dir")
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
    return composition(overrides)[1]


def composed(overrides: list[str]):
    """conf/train.yaml composed with `overrides`, Hydra's node included."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("hydrafit.conf", version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def composition(overrides: list[str]):
    """(the composed config, None), or (None, composition_problem's line)."""
    from hydra.errors import HydraException, MissingConfigException

    try:
        return composed(overrides), None
    except MissingConfigException as error:  # model=transformer
        missing = re.search(r"Could not find '(.+)/([^/']+)'", str(error))
        options = re.findall(r"^\t(\S+)$", str(error), re.M)
        if missing and options:
            return None, f"{missing[1]}={missing[2]}: no such option; available: {', '.join(options)}"
        return None, str(error).splitlines()[0]
    except HydraException as error:
        bad = re.match(r"Could not override '(.+)'", str(error))
        if not bad:
            return None, " ".join(str(error).split("\n")[:1])
        from omegaconf import OmegaConf

        from hydrafit.config import unknown_key  # model.hiden=3: suggest the close name

        parent = bad[1].rpartition(".")[0]
        rest = composed([o for o in overrides if not o.startswith(f"{bad[1]}=")])
        node = OmegaConf.select(rest, parent) if parent else rest
        return None, str(unknown_key(bad[1], [str(k) for k in node] if node is not None else []))


SWEEP_FLAGS = ("-m", "--multirun")


def sweep_problem(arguments: list[str]) -> str | None:
    """composition_problem for the overrides of a sweep (`-m ...`), checked before Hydra creates
    the sweep directory: each override must parse, the first job must compose, and so must every
    option of a swept config group (model=mlp,transformer). Other swept values (optimizer.lr=a,b)
    are each job's own validation: a bad one fails that job, not the sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser, parsed = OverridesParser.create(), []
    for argument in arguments:
        try:
            parsed += parser.parse_overrides([argument])
        except OverrideParseException as error:
            detail = str(error).splitlines()[1].split(" expecting ")[0] if "\n" in str(error) else str(error)
            return (f"{argument}: cannot parse ({detail}); a sweep is comma-separated values (a,b), "
                    f"range(start,stop[,step]), choice(a,b) or interval(low,high)")
    first = [f"{o.get_key_element()}={next(o.sweep_string_iterator())}" if o.is_discrete_sweep()
             else o.input_line for o in parsed if not o.is_sweep_override() or o.is_discrete_sweep()]
    config, problem = composition(first)
    if problem:
        return problem
    groups = config.hydra.runtime.choices  # seed=range(1,61) is a value, model=mlp,resnet a group
    for o in parsed:  # every other option of a swept group
        group = o.key_or_group in groups
        for value in list(o.sweep_string_iterator())[1:] if group and o.is_discrete_sweep() else []:
            others = [f for f in first if not f.startswith(f"{o.get_key_element()}=")]
            if problem := composition_problem([*others, f"{o.get_key_element()}={value}"]):
                return problem
    return None


def explain_composition_errors(entry):
    """Decorates the Hydra entry point: a run or sweep whose overrides Hydra cannot compose (a typo
    in a key, an option that does not exist, a malformed sweep) stops with one line and exit code
    2, before any directory exists. Command lines with other flags (--cfg, --help, -c, ...) go to
    Hydra as they are."""
    @functools.wraps(entry)
    def checked(*args, **kwargs):
        arguments = sys.argv[1:]
        flags = [a for a in arguments if a.startswith("-")]
        overrides = [a for a in arguments if not a.startswith("-")]
        if overrides and not flags:
            problem = composition_problem(overrides)
        elif flags and set(flags) <= set(SWEEP_FLAGS):
            problem = sweep_problem(overrides)
        else:
            problem = None
        if problem:
            fail(problem)
        return entry(*args, **kwargs)
    return checked
