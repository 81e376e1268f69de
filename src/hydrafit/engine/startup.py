"""What a process does before its first fit: import torch and Lightning at the lowest cost, and
quiet the Lightning output that says nothing about the run. Imports neither itself: the entry
points and the vectorised launcher call import_lightning when a run or sweep starts."""
from __future__ import annotations

import gc
import logging
import os
import sys
import warnings


def advertisement(record: logging.LogRecord) -> bool:
    """False for Lightning's "💡 Tip: ... try installing litlogger/litmodels" lines (a logging filter)."""
    return not str(record.msg).startswith("💡 Tip")


def import_lightning() -> None:
    """Import torch and Lightning (~4 s on this project's CPU) with Python's cycle collector
    paused, then move the ~370k objects they made, which live as long as the process, out of its
    way (gc.freeze). Otherwise it walks them all again and again while they pile up (5 full
    collections, ~0.6 s of a default run, that collect nearly nothing), and again after a
    vectorised sweep's batch (launch); forked processes (the vectorised launcher's) then leave
    their pages shared, as gc.freeze's documentation says. Only as a process's first import of
    torch: a Python session that imported it itself (hydrafit.fit) keeps its objects collectable."""
    if "torch" in sys.modules or "pytorch_lightning" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import pytorch_lightning  # noqa: F401
        import torch  # noqa: F401
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def quiet_lightning() -> None:
    """Silence, where each comes from, the Lightning output that says nothing about the run: its
    advertising tips (logged at INFO by its rank_zero logger), "no validation split" (intended
    here), a torch deprecation inside Lightning's own code, and, outside a SLURM allocation, "The
    `srun` command is available on your system but is not used", which Lightning's SLURM
    detection says whenever slurm's client is installed (inside a job it still warns: a job's
    processes started without srun hang). Other warnings still show."""
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if advertisement not in rank_zero.filters:
        rank_zero.addFilter(advertisement)
    warnings.filterwarnings("ignore", message="Total length of .* across ranks is zero")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")
    if "SLURM_JOB_ID" not in os.environ:
        warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not")
