"""Hydra's private names: its override semantics and its grid sweeper.

The vectorised launcher composes hundreds of jobs; Hydra composes each from scratch (~0.25 s a
job on a 2-core AMD EPYC), while a copy of a shared composition with the job's own value
overrides applied costs ~3 ms. Hydra has no public way to apply overrides to a config it
composed, so the launcher uses the function Hydra's own loader applies them with. The grid
sweeper (BasicSweeper) has no public import path, and hydrafit's resumable sweeper wraps it.
"""
from __future__ import annotations

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

CHECKED = "hydra-core 1.3.2 to 1.3.8"

__all__ = ["BasicSweeper", "apply_overrides", "check", "grid_batches", "job_return", "overrides_dirname",
           "returned_value"]


def apply_overrides(overrides: list, config) -> None:
    """Apply parsed value overrides (=, +, ~, ++) to `config` in place, as Hydra's loader does."""
    ConfigLoaderImpl._apply_overrides_to_config(overrides, config)


def overrides_dirname(overrides: list, naming) -> str:
    """hydra.job.override_dirname of a job's parsed task overrides, as Hydra names it."""
    return get_overrides_dirname(overrides=overrides, kv_sep=naming.kv_sep, item_sep=naming.item_sep,
                                 exclude_keys=naming.exclude_keys)


def grid_batches(parsed_overrides: list, max_batch_size: int | None) -> list:
    """The grid's jobs, batched, in Hydra's job-number order (BasicSweeper.split_arguments)."""
    return BasicSweeper.split_arguments(parsed_overrides, max_batch_size)


def returned_value(job_return):
    """What a job returned, or the exception it raised, without raising it (JobReturn's
    return_value property re-raises a failure)."""
    return job_return._return_value


def job_return(value, **fields):
    """A JobReturn holding `value` (what a job returned, or the exception it raised) as Hydra's
    run_job stores it: the public return_value setter cannot store an exception unraised."""
    from hydra.core.utils import JobReturn

    return JobReturn(**fields, _return_value=value)


def check() -> None:
    """Raise, naming Hydra, if a name used here is gone or changed (tests/test_compat.py)."""
    import hydra

    missing = [name for owner, name in ((ConfigLoaderImpl, "_apply_overrides_to_config"),
                                        (BasicSweeper, "split_arguments"))
               if not callable(getattr(owner, name, None))]
    from hydra.core.utils import JobReturn

    if "_return_value" not in JobReturn.__dataclass_fields__:
        missing.append("JobReturn._return_value")
    if missing:
        raise RuntimeError(f"hydra-core {hydra.__version__} lacks {', '.join(missing)} "
                           f"(hydrafit.compat.hydra was checked with {CHECKED})")
