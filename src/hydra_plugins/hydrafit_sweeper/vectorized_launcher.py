"""hydra/launcher=vectorized for Hydra's plugin scan; the launcher is hydrafit.launch.vectorized."""
from hydrafit.launch.vectorized import VectorizedLauncher  # noqa: F401
