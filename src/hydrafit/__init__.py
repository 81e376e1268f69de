"""hydrafit: fit 1-D functions with Hydra-composed PyTorch Lightning runs.

From Python: `hydrafit.fit(overrides)` trains a run, `hydrafit.load(run_dir)` reads one back
(hydrafit.api). Importing hydrafit imports neither torch nor Lightning; fitting does.
"""
from hydrafit.api import Result, fit, load
from hydrafit.config import ConfigError

__all__ = ["ConfigError", "Result", "RunStopped", "fit", "load"]


def __getattr__(name: str):
    if name == "RunStopped":  # hydrafit.train imports Hydra's app machinery: only when asked
        from hydrafit.train import RunStopped

        return RunStopped
    raise AttributeError(f"module 'hydrafit' has no attribute {name!r}")
