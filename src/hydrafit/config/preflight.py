"""Checks made before Hydra creates any directory: the output dir can be written, resume= names
a run, an explicit hydra.run.dir / hydra.sweep.dir holds no results, and the overrides compose
(Hydra's own message for a typo spans several lines; these say it in one).

Hydra creates the run dir and writes .hydra/ before the task function starts, and reports a
failure to do so with a traceback; hydrafit.cli.callbacks.Preflight runs these first.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import to_absolute_path
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf

from hydrafit.config.errors import ConfigError, unknown_key
from hydrafit.config.validate import check_multirun_strategy, refuse_lr_find_in_sweeps
from hydrafit.rundir.dirs import ddp_child, given_dir, holds_results


def check_writable(key: str, directory: str) -> None:
    """The directory is writable, or can be created, and nothing is created here: an existing
    one (resume=, resume_sweep=) is only asked; otherwise a temp file is opened and deleted in
    its nearest existing parent (what Hydra will create it in). Raises ConfigError."""

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

    resume = config.get("resume")
    if resume is not None and not (Path(resume) / ".hydra" / "config.yaml").is_file():
        raise ConfigError(f"resume: '{resume}' is not a hydrafit run directory (no .hydra/config.yaml)")
    replay = config.get("pbt_replay")
    if replay is not None and not (Path(replay) / "pbt_schedule.yaml").is_file():
        raise ConfigError(f"pbt_replay: '{replay}' is not a member of a PBT run (no pbt_schedule.yaml); "
                          f"give a member's directory of a hydrafit-train -m hparams_search=pbt sweep")
    refuse_existing(config, "hydra.run.dir")
    check_writable("hydra.run.dir", run_dir)


def check_multirun(config: DictConfig) -> None:
    """A sweep's checks before its directory exists: what no job of it could run."""

    check_multirun_strategy(config.trainer)  # a job that picks DDP through a sweep: validate()
    refuse_lr_find_in_sweeps(config)
    refuse_existing(config, "hydra.sweep.dir")
    check_writable("hydra.sweep.dir", config.hydra.sweep.dir)


def composition_problem(overrides: list[str]) -> str | None:
    """What Hydra would say about composing conf/train.yaml with `overrides`, as one line that
    names the key and what is allowed (Hydra's own message spans several lines), or None."""
    return composition(overrides)[1]


def composed(overrides: list[str]):
    """conf/train.yaml composed with `overrides`, Hydra's node included."""
    with initialize_config_module("hydrafit.conf", version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def composition(overrides: list[str]):
    """(the composed config, None), or (None, composition_problem's line)."""
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


def refuse_existing(config, key: str) -> None:
    """An explicit hydra.run.dir / hydra.sweep.dir that already holds a run or a sweep is refused
    (ConfigError), or with `overwrite=true` emptied first; nothing else is touched. Joining an
    Optuna search is the one case where an existing sweep dir is accepted as it is."""

    given = given_dir(config, key)
    if given is None or ddp_child(config) or not Path(given).is_dir():
        return
    if key == "hydra.sweep.dir" and config.hydra.sweeper.get("join"):
        return  # a worker joining an Optuna search in a shared sweep dir (hydra.sweeper.join=true)
    held = holds_results(Path(given))
    if held is None:
        return
    if config.get("overwrite") is True:
        shutil.rmtree(given)
        return
    again = "hydrafit-train resume=" if held == "a run" else "hydrafit-train -m resume_sweep="
    raise ConfigError(f"{key}: '{given}' already holds {held}; continue it with {again}{given}, "
                      f"choose another directory, or replace it with overwrite=true")


CHECKPOINTS = ("last", "best")


def check_request(cfg: DictConfig) -> Path:
    """The checkpoint to load, <run>/checkpoints/<ckpt>.ckpt, after checking that `run` is a
    run directory that has it and that `input`, if given, exists."""
    if OmegaConf.is_missing(cfg, "run") or not cfg.run:
        raise ConfigError("run: required: a run directory, e.g. run=outputs/runs/2026-11-24_08-48-10")
    run_dir = Path(to_absolute_path(str(cfg.run)))
    if not run_dir.is_dir():
        raise ConfigError(f"run: no directory '{cfg.run}' (looked for {run_dir})")
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        raise ConfigError(f"run: '{cfg.run}' is not a hydrafit run directory (no .hydra/config.yaml)")
    if cfg.ckpt not in CHECKPOINTS:
        raise ConfigError(f"ckpt must be one of {', '.join(CHECKPOINTS)}, got {cfg.ckpt!r}")
    path = run_dir / "checkpoints" / f"{cfg.ckpt}.ckpt"
    if not path.is_file():
        raise ConfigError(f"ckpt: the run has no {cfg.ckpt} checkpoint ({path} is missing; "
                          f"runs with callbacks=none or ~callbacks.model_checkpoint save none)")
    if cfg.input is not None and not Path(to_absolute_path(str(cfg.input))).is_file():
        raise ConfigError(f"input: no file '{cfg.input}' (looked for {to_absolute_path(str(cfg.input))})")
    return path
