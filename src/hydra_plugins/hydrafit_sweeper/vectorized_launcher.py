"""hydra/launcher=vectorized: the plugin class, where Hydra accepts it (it instantiates plugins only from the
hydra_plugins namespace). Its config node is hydrafit.config.plugins', its work hydrafit.launch.vectorized's."""
from hydrafit.launch import vectorized
from hydrafit.config import plugins  # noqa: F401  the config node of hydra/launcher=vectorized


class VectorizedLauncher(vectorized.VectorizedLauncher):
    """hydrafit.launch.vectorized.VectorizedLauncher, where Hydra looks for it."""
