"""hydra/sweeper=resumable for Hydra's plugin scan; the sweeper is hydrafit.sweeps.resumable."""
from hydrafit.sweeps.resumable import ResumableSweeper  # noqa: F401
