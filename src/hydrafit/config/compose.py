"""The config `hydrafit-train <overrides>` would run, composed in-process (hydrafit.fit, tests,
benchmarks), and the .hydra/ record Hydra writes before a run starts."""
from __future__ import annotations

import os
from pathlib import Path

from hydra import compose as hydra_compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydrafit.config import plugins, resolvers  # noqa: F401  conf/ uses their nodes and ${hydrafit.*}
from hydrafit.config.errors import ConfigError
from hydrafit.config.expression import quote_formula
from hydrafit.config.preflight import composition_problem
from hydrafit.rundir.files import write_atomic


def compose(overrides: list[str], run_dir: str | Path | None = None) -> DictConfig:
    """The config `hydrafit-train <overrides>` would run, Hydra's node included, composed
    in-process (hydrafit.fit, tests, benchmarks): formulas quoted as the command line quotes
    them, a problem Hydra finds raised as the CLI's one-line ConfigError, and Hydra's runtime set
    as a run sets it, its output dir `run_dir` or else the one `hydra.run.dir` names. Writes nothing."""
    overrides = [quote_formula(o) for o in overrides] + ([f"hydra.run.dir={run_dir}"] if run_dir else [])
    overrides.append("hydra.mode=RUN")  # as Hydra's own run adds it
    try:  # job_name: the CLI's, so .hydra/hydra.yaml and <job name>.log are the same
        with initialize_config_module("hydrafit.conf", version_base="1.3", job_name="train"):
            cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    except HydraException as error:
        raise ConfigError(composition_problem(overrides) or str(error).splitlines()[0]) from None
    HydraConfig.instance().set_config(cfg)  # resolves hydra.run.dir, as Hydra's run_job does
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = os.path.abspath(str(cfg.hydra.run.dir))
    HydraConfig.instance().set_config(cfg)
    return cfg


def job_config(cfg: DictConfig) -> DictConfig:
    """The task's part of a composed config: what Hydra passes to main() and saves as config.yaml."""
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
    return job


def start(cfg: DictConfig) -> DictConfig:
    """What Hydra does between composing and calling main(): create the run dir and write its
    .hydra/ record (config.yaml, hydra.yaml, overrides.yaml), so that hydrafit-eval and resume=
    read an in-process run like any other. Returns the job config."""
    job = job_config(cfg)
    record = Path(cfg.hydra.runtime.output_dir) / str(cfg.hydra.output_subdir)
    record.mkdir(parents=True, exist_ok=True)
    for name, tree in (("config.yaml", job), ("hydra.yaml", HydraConfig.instance().cfg),
                       ("overrides.yaml", cfg.hydra.overrides.task)):
        write_atomic(record / name, OmegaConf.to_yaml(tree))  # what OmegaConf.save writes
    return job


def compose_job(overrides: list[str], run_dir: Path) -> DictConfig:
    """The job config that `hydrafit-train <overrides> hydra.run.dir=<run_dir>` would train,
    with its run dir and record written as Hydra writes them. Pass it to build() or train()."""
    return start(compose(overrides, run_dir))
