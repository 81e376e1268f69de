"""checkpoints/last.ckpt as resume= and resume_sweep= read it: a run continues from it only if it
loads and holds what Lightning restores (weights, step, epoch). torch is imported when a
checkpoint is read, not with this module: the sweepers import it before any run starts."""
from __future__ import annotations

from pathlib import Path


def read_last(run_dir: Path) -> tuple[dict, Path]:
    """(checkpoint, its path) of the run's checkpoints/last.ckpt; ValueError, saying why, if it is
    missing, corrupt, truncated or not a hydrafit checkpoint."""
    import torch

    ckpt_path = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not ckpt_path.is_file():
        raise ValueError(f"no checkpoint to continue from ({ckpt_path} is missing)")
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        checkpoint["state_dict"], checkpoint["global_step"], checkpoint["epoch"]
    except Exception as error:
        raise ValueError(f"{ckpt_path} is not a readable hydrafit checkpoint ({type(error).__name__})") from None
    return checkpoint, ckpt_path
