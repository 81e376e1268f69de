"""Hydra's sweep grammar, parsed as Hydra parses it: `a,b`, `range()`, `choice()`, `interval()`."""
from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser

from hydrafit.compat.hydra import grid_batches


def parse_sweep(task_overrides, params=None, config_loader=None) -> list:
    """Hydra's parsed overrides of a sweep: sweeper params first, then the command line's."""
    arguments = [f"{k}={v}" for k, v in (params or {}).items()] + [str(o) for o in task_overrides]
    return OverridesParser.create(config_loader=config_loader).parse_overrides(arguments)


def grid_jobs(task_overrides, params=None, config_loader=None) -> list[list[str]]:
    """The overrides of each job of a grid sweep, in Hydra's job-number order (as BasicSweeper)."""
    parsed = parse_sweep(task_overrides, params, config_loader)
    return [list(job) for batch in grid_batches(parsed, None) for job in batch]
