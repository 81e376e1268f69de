"""hydra/sweeper=resumable, optuna and pbt, hydra/launcher=vectorized and (with the sweeps extra)
hydra/launcher=slurm and slurm_vectorized, made known to Hydra.

Hydra's plugin scan finds them in hydra_plugins/hydrafit_sweeper. The entry points also register
them by hand (Hydra's documented manual registration) before Hydra composes, so that a command
works where the scan cannot see src/hydra_plugins: an editable install through an import hook
(setuptools' editable_mode=strict or a layout it cannot map with a plain path entry). The one place
hydrafit imports the plugin modules (pyproject.toml's import contract names it). Importing them
imports neither torch nor Optuna.
"""
from __future__ import annotations

from hydra.core.plugins import Plugins


def register_plugins() -> None:
    plugins = Plugins.instance()  # the scan first: it re-executes plugin modules already imported
    from hydra_plugins.hydrafit_sweeper import (optuna_sweeper, pbt_sweeper, resumable_sweeper, slurm_launcher,
                                                vectorized_launcher)

    for plugin in (resumable_sweeper.ResumableSweeper, optuna_sweeper.OptunaSweeper, pbt_sweeper.PBTSweeper,
                   vectorized_launcher.VectorizedLauncher, getattr(slurm_launcher, "SlurmLauncher", None),
                   getattr(slurm_launcher, "SlurmVectorizedLauncher", None)):
        if plugin is not None:  # the SLURM launchers need hydra-submitit-launcher
            plugins.register(plugin)
