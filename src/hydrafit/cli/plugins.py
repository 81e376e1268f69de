"""hydra/sweeper=resumable, hydra/sweeper=optuna and hydra/launcher=vectorized, made known to Hydra.

Hydra's plugin scan finds them in hydra_plugins/hydrafit_sweeper in a regular install; in an
editable one setuptools' import hook hides src/hydra_plugins from pkgutil, so the entry points
register them (Hydra's documented manual registration) before Hydra composes. The one place
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
