"""hydra/sweeper=resumable, hydra/sweeper=optuna and hydra/launcher=vectorized, made known to Hydra.

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
    from hydra_plugins.hydrafit_sweeper import optuna_sweeper, resumable_sweeper, vectorized_launcher

    for plugin in (resumable_sweeper.ResumableSweeper, optuna_sweeper.OptunaSweeper,
                   vectorized_launcher.VectorizedLauncher):
        plugins.register(plugin)
