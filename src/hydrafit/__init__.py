"""hydrafit: fit 1-D functions with Hydra-composed PyTorch Lightning runs.

From Python: `hydrafit.fit(overrides)` trains a run, `hydrafit.load(run_dir)` reads one back
(hydrafit.api). Importing hydrafit imports neither torch nor Lightning; fitting does.
"""
from hydrafit.api import Result, fit, load
from hydrafit.config.errors import ConfigError
from hydrafit.report.status import RunStopped

__all__ = ["ConfigError", "Result", "RunStopped", "fit", "load"]
