"""hydra/sweeper=pbt: the plugin class, where Hydra accepts it (it instantiates plugins only from the
hydra_plugins namespace). Its config node is hydrafit.config.plugins', its work hydrafit.sweeps.pbt's."""
from hydrafit.sweeps import pbt
from hydrafit.config import plugins  # noqa: F401  the config node of hydra/sweeper=pbt


class PBTSweeper(pbt.PBTSweeper):
    """hydrafit.sweeps.pbt.PBTSweeper, where Hydra looks for it."""
