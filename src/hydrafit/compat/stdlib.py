"""The standard library's private names: the exit handlers a normal interpreter exit runs.

hydrafit-train exits without tearing the interpreter down (freeing torch's and Lightning's
objects one by one takes ~1 s, a sixth of a default run on a 2-core AMD EPYC); it first runs
what a normal exit runs (logging.shutdown, multiprocessing's finalizers, ...), which only
atexit's private _run_exitfuncs does.
"""
from __future__ import annotations

import atexit

CHECKED = "CPython 3.10 to 3.13"


def run_exit_handlers() -> None:
    atexit._run_exitfuncs()


def check() -> None:
    import sys

    if not callable(getattr(atexit, "_run_exitfuncs", None)):
        raise RuntimeError(f"Python {sys.version.split()[0]}: atexit._run_exitfuncs is gone "
                           f"(hydrafit.compat.stdlib was checked with {CHECKED})")
