"""A run's .hydra/ record: written for the members of a vectorised sweep as Hydra's run_job
writes it for any job, and read back (hydrafit-eval, resume=, hydrafit.load)."""
from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from hydrafit.compat.omegaconf import yaml_text
from hydrafit.rundir.files import write_atomic


def save_record(config: DictConfig, task: DictConfig, record: Path) -> None:
    """The job's .hydra/ (config.yaml, hydra.yaml, overrides.yaml) as Hydra's run_job writes it."""
    record.mkdir(parents=True, exist_ok=True)
    for name, tree in (("config.yaml", task), ("hydra.yaml", {"hydra": config.hydra}),
                       ("overrides.yaml", config.hydra.overrides.task)):
        write_atomic(record / name, yaml_text(tree))


def recorded_config(run_dir: Path) -> DictConfig:
    """The run's composed config (.hydra/config.yaml), with a relative dataset.path made absolute
    against the directory the run was launched from (Hydra records it as hydra.runtime.cwd)."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    path = cfg.dataset.get("path")
    if isinstance(path, str) and not Path(path).is_absolute():
        hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
        launch_dir = OmegaConf.load(hydra_yaml).hydra.runtime.cwd if hydra_yaml.is_file() else os.getcwd()
        cfg.dataset.path = str(Path(launch_dir) / path)
    return cfg


def resolved_config(run_dir: Path) -> DictConfig:
    """recorded_config with its ${hydra:...} interpolations resolved against the run's
    .hydra/hydra.yaml (the output dir: `run_dir`), usable outside Hydra."""
    hydra_cfg = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml")  # what ${hydra:...} reads
    hydra_cfg.hydra.runtime.output_dir = str(run_dir.absolute())
    previous, HydraConfig.instance().cfg = HydraConfig.instance().cfg, hydra_cfg
    try:
        return OmegaConf.create(OmegaConf.to_container(recorded_config(run_dir), resolve=True))
    finally:
        HydraConfig.instance().cfg = previous
