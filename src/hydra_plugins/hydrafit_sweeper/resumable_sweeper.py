"""hydra/sweeper=resumable: the plugin class, where Hydra accepts it (it instantiates plugins only from the
hydra_plugins namespace). Its config node is hydrafit.config.plugins', its work hydrafit.sweeps.resumable's."""
from hydrafit.sweeps import resumable
from hydrafit.config import plugins  # noqa: F401  the config node of hydra/sweeper=resumable


class ResumableSweeper(resumable.ResumableSweeper):
    """hydrafit.sweeps.resumable.ResumableSweeper, where Hydra looks for it."""
