"""hydrafit-train: compose conf/train.yaml with overrides, validate, train, report.

    hydrafit-train                                   # the Lux polynomial tutorial
    hydrafit-train model.hidden_dims=[32,32] optimizer=sgd optimizer.lr=0.1
    hydrafit-train --cfg job                         # print the composed config, train nothing
    python -m hydrafit.cli.train experiment=lux_tutorial

Only Hydra and OmegaConf are imported before a run starts: `--help` and `--cfg` are answered by
Hydra alone, without paying ~4 s for torch and Lightning (hydrafit.api.run imports them).
"""
from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from hydrafit.api import record_failure, run
from hydrafit.cli.plugins import register_plugins
from hydrafit.compat.omegaconf import parsing_cached
from hydrafit.compat.stdlib import run_exit_handlers
from hydrafit.config import resolvers  # noqa: F401  conf/ uses the ${hydrafit.*} resolvers
from hydrafit.config.errors import ConfigError, refuse
from hydrafit.config.expression import quote_formula
from hydrafit.config.preflight import SWEEP_FLAGS, composition_problem, sweep_problem
from hydrafit.engine.startup import import_lightning
from hydrafit.report.status import RunStopped
from hydrafit.rundir.files import DISK_ERRNOS, as_write_error


def exits_without_teardown(entry):
    """Decorates the console entry point: once it has returned normally, the process exits
    without tearing the interpreter down. Freeing torch's and Lightning's objects one by one
    takes ~1 s (a sixth of a default run; benchmarks/, row 2) and achieves nothing at exit.
    Output is flushed and atexit handlers run first. Errors, calls from other code (tests),
    live non-daemon threads and a live torch.distributed process group exit the usual way."""
    @functools.wraps(entry)
    def entry_then_exit(*args, **kwargs):
        result = entry(*args, **kwargs)
        dist = sys.modules.get("torch.distributed")
        if (getattr(sys.modules.get("__main__"), "entry", None) is entry_then_exit
                and all(t.daemon or t is threading.main_thread() for t in threading.enumerate())
                and not (dist and dist.is_available() and dist.is_initialized())):
            run_exit_handlers()  # what a normal exit runs: logging.shutdown, multiprocessing, ...
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):  # a closed pipe (| head) or stream: nothing to keep
                    pass
            os._exit(0)
        return result
    return entry_then_exit


def quote_formulas(entry):
    """Decorates a Hydra entry point so that `dataset.expr=sin(3*x) + 0.5*x` works as typed.

    Hydra's override grammar reads `sin(...)` as a call of one of its own functions and stops
    at spaces, so a formula would need Hydra quoting: 'dataset.expr="sin(3*x) + 0.5*x"'. This
    quotes a formula typed without quotes (see quote_formula) before Hydra parses the command
    line, so that hydrafit.config.expression, not the override parser, judges it.
    """
    @functools.wraps(entry)
    def with_quoted_formulas(*args, **kwargs):
        sys.argv[1:] = [quote_formula(arg) for arg in sys.argv[1:]]
        return entry(*args, **kwargs)
    return with_quoted_formulas


def explain_composition_errors(entry):
    """Decorates the Hydra entry point: a run or sweep whose overrides Hydra cannot compose (a typo
    in a key, an option that does not exist, a malformed sweep) stops with one line and exit code
    2, before any directory exists. Command lines with other flags (--cfg, --help, -c, ...) go to
    Hydra as they are."""
    @functools.wraps(entry)
    def checked(*args, **kwargs):
        arguments = sys.argv[1:]
        flags = [a for a in arguments if a.startswith("-")]
        overrides = [a for a in arguments if not a.startswith("-")]
        if overrides and not flags:
            problem = composition_problem(overrides)
        elif flags and set(flags) <= set(SWEEP_FLAGS):
            problem = sweep_problem(overrides)
        else:
            problem = None
        if problem:
            refuse(problem)
        return entry(*args, **kwargs)
    return checked


@quote_formulas  # dataset.expr=sin(3*x) + 0.5*x, as typed, despite Hydra's override grammar
@explain_composition_errors  # model.hiden=3, model=transformer: one line, not Hydra's several
@hydra.main(version_base="1.3", config_path="pkg://hydrafit.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    import_lightning()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        return run(cfg)[2]
    except RunStopped as stop:  # metrics.json already says diverged/interrupted
        if multirun:
            raise
        print(f"hydrafit-train: {stop.status}: {stop}", file=sys.stderr)
        sys.exit(130 if stop.status == "interrupted" else 1)
    except ConfigError as error:
        if multirun:  # one bad job of a grid: record it, let Hydra mark it failed, go on
            record_failure(error)
            raise
        # A single run: one clear line, no traceback, nothing written beyond Hydra's .hydra/.
        refuse(str(error))
    except OSError as error:  # run() recorded it in metrics.json, where the disk let it
        failure = as_write_error(error, Path(HydraConfig.get().runtime.output_dir))
        if failure is None or (multirun and failure is error):
            raise
        if multirun:  # SweepSummary says it in one line, its traceback goes to the job's log
            raise failure from error
        print(f"hydrafit-train: error: {failure}", file=sys.stderr)
        sys.exit(1)


def disk_errors_left_to_the_run(args) -> None:
    """threading.excepthook: TensorBoard writes its event file from a thread of its own, whose
    full disk its next write raises again in the run's thread, which reports it in one line (a
    traceback here would say it first, at length). Other errors go to Python's hook."""
    if not (isinstance(args.exc_value, OSError) and args.exc_value.errno in DISK_ERRNOS):
        threading.__excepthook__(args)


@exits_without_teardown  # the second an exit spends freeing objects
def entry() -> None:
    """The console script: the plugins registered, interpolations parsed once for the process."""
    # A log file on a full disk would print a traceback for every line logged: the write that
    # failed is reported once, in one line (a log handler's errors are otherwise ignored).
    logging.raiseExceptions = False
    threading.excepthook = disk_errors_left_to_the_run
    register_plugins()
    with parsing_cached():
        main()


if __name__ == "__main__":
    entry()
