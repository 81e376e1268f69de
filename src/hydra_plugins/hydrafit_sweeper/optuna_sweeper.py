"""hydra/sweeper=optuna: the plugin class, where Hydra accepts it (it instantiates plugins only from the
hydra_plugins namespace). Its config node is hydrafit.config.plugins', its work hydrafit.sweeps.optuna_sweeper's."""
from hydrafit.sweeps import optuna_sweeper
from hydrafit.config import plugins  # noqa: F401  the config node of hydra/sweeper=optuna


class OptunaSweeper(optuna_sweeper.OptunaSweeper):
    """hydrafit.sweeps.optuna_sweeper.OptunaSweeper, where Hydra looks for it."""
