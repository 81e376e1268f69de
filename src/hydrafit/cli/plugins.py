"""hydra/sweeper=resumable, hydra/sweeper=optuna and hydra/launcher=vectorized, made known to Hydra.

Hydra's plugin scan finds them through hydra_plugins/hydrafit_sweeper in a regular install; in an
editable one setuptools' import hook hides src/hydra_plugins from pkgutil, so the entry points
register them (Hydra's documented manual registration) before Hydra composes. Importing these
modules imports neither torch nor Optuna.
"""
from __future__ import annotations

from hydra.core.plugins import Plugins

from hydrafit.launch.vectorized import VectorizedLauncher
from hydrafit.sweeps.optuna_sweeper import OptunaSweeper
from hydrafit.sweeps.resumable import ResumableSweeper


def register_plugins() -> None:
    plugins = Plugins.instance()
    for plugin in (ResumableSweeper, OptunaSweeper, VectorizedLauncher):
        plugins.register(plugin)
