"""hydra/sweeper=optuna for Hydra's plugin scan; the sweeper is hydrafit.sweeps.optuna_sweeper."""
from hydrafit.sweeps.optuna_sweeper import OptunaSweeper  # noqa: F401
