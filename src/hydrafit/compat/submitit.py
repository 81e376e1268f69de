"""submitit's list of the executor parameters every cluster shares (timeout_min, mem_gb,
cpus_per_task, ...), which hydra-submitit-launcher also reads to tell them from SLURM's own
(given as slurm_<key>): submitit keeps it private (AutoExecutor._valid_parameters), and the
launcher's own executor set-up is not a function hydrafit.launch.slurm could call.
"""
from __future__ import annotations

CHECKED = "submitit 1.5"


def shared_parameters() -> set:
    """The parameters AutoExecutor takes without a cluster prefix."""
    import submitit

    return set(submitit.AutoExecutor._valid_parameters())


def check() -> None:
    """Raise, naming submitit, if the name used here is gone (tests/test_compat.py)."""
    import submitit

    if not callable(getattr(submitit.AutoExecutor, "_valid_parameters", None)):
        raise AssertionError(f"submitit.AutoExecutor._valid_parameters is gone (checked: {CHECKED})")
