"""The Optuna side of `hparams_search=optuna`: where the study lives, its search space, its pruner,
the heartbeats of running trials, the trial a job is running, and the pictures of a finished
search. Used by the sweeper (hydrafit.sweeps.optuna_sweeper), by the jobs
(hydrafit.sweeps.pruning) and by the sweep summary (hydrafit.sweeps.records). Optuna is imported
only here, and only when a search runs.

    hydrafit-train -m hparams_search=optuna                      # study in <sweep dir>/optuna.db
    hydrafit-train -m hparams_search=optuna hydra.sweeper.pruner=median
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

from hydrafit.rundir.locks import sqlite_lock

log = logging.getLogger(__name__)

SWEEPER = "OptunaSweeper"  # the class name hydra.sweeper._target_ ends with
PRUNERS = ("none", "median", "hyperband")
# Trial states a search counts: finished ones make up n_trials; running ones are someone's turn.
FINISHED, ACTIVE = ("COMPLETE", "PRUNED"), ("RUNNING", "WAITING")
STATUS = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running",
          "WAITING": "missing"}  # a trial's state in the words of metrics.json
PICTURES = {"optimization_history.png": "plot_optimization_history",
            "param_importances.png": "plot_param_importances"}


def is_search(sweeper_config) -> bool:
    return str(sweeper_config.get("_target_", "")).endswith(SWEEPER)


def storage_url(storage: str | None, sweep_dir: Path) -> str:
    """hydra.sweeper.storage, or by default an SQLite file in the sweep directory."""
    return storage or f"sqlite:///{Path(sweep_dir).resolve() / 'optuna.db'}"


def storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
            on_stale=None):
    """Optuna's RDB storage of `url`; SQLite waits up to 60 s for a lock (several workers, a loaded
    machine) where its default, 5 s, gave 'database is locked'. With `heartbeat_interval` (s), a
    trial kept alive by `heartbeats` whose last heartbeat is older than `grace_period` (s; None:
    twice the interval) is failed by `fail_stale` and handed to `on_stale(study, frozen_trial)`."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    beats = {}
    if heartbeat_interval is not None:
        beats = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                 stale_callback_keyword(): on_stale}
    with sqlite_lock(url), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
        return created(lambda: optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **beats))


def created(make, tries: int = 5):
    """make() of a storage, again if a worker on another connection created its tables at the
    same moment: workers of a database server (PostgreSQL; several machines, which no file lock
    serialises) race in the creation of a new store's tables, and the loser fails with a
    duplicate (PostgreSQL: 'duplicate key ... alembic_version'); tried again, it finds the
    tables the winner made."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(tries):
        try:
            return make()
        except (IntegrityError, ProgrammingError):
            if attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def stale_callback_keyword() -> str:
    """RDBStorage's argument for the callback of a stale trial: Optuna 4.9 renamed
    failed_trial_callback (deprecated, removed in Optuna 6) to heartbeat_stale_trial_callback."""
    import optuna

    renamed = "heartbeat_stale_trial_callback"
    known = inspect.signature(optuna.storages.RDBStorage).parameters
    return renamed if renamed in known else "failed_trial_callback"


# A process forked while the heartbeat thread is inside SQLite would inherit SQLite's locks held by
# a thread it does not have, and hang on its first query (hydra/launcher=vectorized forks): a fork
# waits for the heartbeat being written.
_BEATING = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_BEATING.acquire, after_in_parent=_BEATING.release,
                        after_in_child=_BEATING.release)


def first_heartbeat(store, study_name: str, trial) -> None:
    """Record the first heartbeat of a trial just asked, and mark it (user attribute
    heartbeat_interval): a marked trial whose heartbeats stop is failed by fail_stale, so other
    workers may wait for it (watched); one without (its worker runs without heartbeats, or died
    before this) never is."""
    interval = store.get_heartbeat_interval()
    if interval is None:
        return
    study_id = store.get_study_id_from_name(study_name)
    with _BEATING:
        store.record_heartbeat(store.get_trial_id_from_study_id_trial_number(study_id, trial.number))
    trial.set_user_attr("heartbeat_interval", interval)


def watched(study) -> int:
    """Running trials whose heartbeats fail_stale watches (first_heartbeat)."""
    return sum(t.state.name == "RUNNING" and "heartbeat_interval" in t.user_attrs
               for t in study.get_trials(deepcopy=False))


@contextlib.contextmanager
def heartbeats(store, study_name: str, numbers: list[int]):
    """Keep the trials `numbers` of study `study_name` alive while the block runs: a heartbeat for
    each now, then every heartbeat_interval from a thread. Optuna's own heartbeat thread runs
    inside Study.optimize only; the sweeper asks and tells. Nothing where heartbeats are off."""
    interval = store.get_heartbeat_interval()
    if interval is None:
        yield
        return
    study_id = store.get_study_id_from_name(study_name)
    trial_ids = [store.get_trial_id_from_study_id_trial_number(study_id, n) for n in numbers]
    stop = threading.Event()
    thread = threading.Thread(target=_beat, args=(store, trial_ids, interval, stop),
                              name="hydrafit-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _beat(store, trial_ids: list[int], interval: int, stop: threading.Event) -> None:
    while True:
        try:
            with _BEATING:
                for trial_id in trial_ids:
                    store.record_heartbeat(trial_id)
        except Exception as error:  # a database busy past its timeout: the next heartbeat may pass
            log.warning("heartbeat not recorded: %s", error)
        if stop.wait(interval):
            return


def fail_stale(study) -> None:
    """Fail the trials whose heartbeat stopped (their worker was killed, or its machine is gone),
    each then handed to the storage's on_stale: Optuna's fail_stale_trials, which Study.optimize
    runs before each trial. Nothing where heartbeats are off."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def retries(study, trial) -> int:
    """How many times in a row the parameters of `trial` were asked again before it (its chain
    of user attributes retry_of)."""
    retry_of = {t.number: t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
    count, number = 0, trial.user_attrs.get("retry_of")
    while number is not None:
        count, number = count + 1, retry_of.get(number)
    return count


def make_pruner(pruner=None):
    """hydra.sweeper.pruner: none (every trial runs to its end: comparable with a grid), median
    (Optuna's MedianPruner: stop a trial whose running metric is worse than the median of the
    earlier trials' at the same epoch, once 5 trials have finished), hyperband (Optuna's
    HyperbandPruner), or any Optuna pruner as a Hydra node, e.g.
    {_target_:optuna.pruners.ThresholdPruner,upper:0.5}."""
    import optuna

    if isinstance(pruner, Mapping):
        from hydra.utils import instantiate

        return instantiate(pruner)
    name = str(pruner or "none").lower()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"hydra.sweeper.pruner: '{pruner}' is not a pruner; use one of "
                     f"{', '.join(PRUNERS)} or an Optuna pruner node {{_target_:optuna.pruners...}}")


def prunes(pruner) -> bool:
    return isinstance(pruner, Mapping) or str(pruner or "none").lower() != "none"


def load(url: str, name: str, pruner: str | None = None, sampler=None):
    """The study `name` in `url` (None if there is none)."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage(url), pruner=make_pruner(pruner),
                                 sampler=sampler)
    except KeyError:  # Optuna: "Record does not exist."
        return None


def counts(study) -> tuple[int, int, int]:
    """(finished, running, waiting) trials of the study: finished count towards n_trials; running
    ones, in this or another worker, may; waiting ones are enqueued (a retry), for the next ask."""
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    return sum(s in FINISHED for s in states), states.count("RUNNING"), states.count("WAITING")


def distribution(override):
    """The Optuna distribution of one swept override: choice(...) and a,b,c -> categorical,
    range(a, b[, step]) -> int (or float) steps from a to below b, interval(a, b) -> float, or int
    where both ends are ints (int(interval(8, 64))); tag(log, ...) samples on a log scale."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if getattr(value, "shuffle", False):
        raise ValueError(f"{override.input_line}: shuffle() means nothing to Optuna")
    log_scale = "log" in getattr(value, "tags", set())
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        kind = IntDistribution if isinstance(low, int) and isinstance(high, int) else FloatDistribution
        return kind(low, high, log=log_scale)
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], step=int(value.step), log=log_scale)
        return FloatDistribution(values[0], values[-1], step=value.step)
    if isinstance(value, ChoiceSweep):
        plain = (str, int, float, bool, type(None))
        return CategoricalDistribution([v if isinstance(v, plain) else str(v) for v in value.list])
    raise ValueError(f"{override.input_line}: Optuna searches choice(), range() and interval() only")


def search_space(overrides) -> tuple[dict, list[str]]:
    """Hydra's parsed overrides -> ({key: distribution} of the swept ones, the others as typed)."""
    space, fixed = {}, []
    for override in overrides:
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(override.input_line)
    return space, fixed


def job_trial(hydra_config) -> tuple | None:
    """(storage url, study name, trial number, pruner) of the trial a job of an Optuna search
    runs, from its Hydra config (the sweeper gives each job these; its job number is the trial
    number); None outside a search, or where nothing needs the trial (pruner none)."""
    sweeper = hydra_config.get("sweeper") or {}
    if str(hydra_config.mode) != "RunMode.MULTIRUN" or not is_search(sweeper):
        return None
    pruner = sweeper.get("pruner")
    if not prunes(pruner):
        return None
    pruner = OmegaConf.to_container(pruner) if OmegaConf.is_config(pruner) else pruner
    url = storage_url(sweeper.get("storage"), Path(str(hydra_config.sweep.dir)))
    return url, str(sweeper.study_name), int(hydra_config.job.num), pruner


def trial(url: str, name: str, number: int, pruner=None):
    """The live optuna.Trial `number` of study `name`, to report to and ask whether to prune."""
    import optuna

    store = storage(url)
    study = optuna.load_study(study_name=name, storage=store, pruner=make_pruner(pruner))
    trial_id = store.get_trial_id_from_study_id_trial_number(store.get_study_id_from_name(name), number)
    return optuna.trial.Trial(study, trial_id)


def trial_jobs(url: str, name: str) -> dict:
    """Trial number -> FrozenTrial of every trial of the study that got a job directory, except
    the ones retried under another number (killed with their sweep, see the sweeper's resume).
    None if the study cannot be read."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        return None  # opening it would create an empty database
    try:
        study = load(url, name)
    except Exception as error:  # a storage out of reach: the local job directories still tell
        log.warning("cannot read the Optuna study %s in %s: %s", name, url, error)
        return None
    if study is None:
        return None
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    return {t.number: t for t in trials if "job_dir" in t.user_attrs and t.number not in retried}


def draw_pictures(study, sweep_dir: Path, metric: str = "Objective Value") -> list[str]:
    """Optuna's optimisation history and parameter importances (its matplotlib plots) as PNGs in
    the sweep directory; returns the names written. A picture Optuna cannot draw yet (importances
    need 2 finished trials that differ) is skipped with a warning."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as plots

    written = []
    for name, plot in PICTURES.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning: the matplotlib backend
                axes = getattr(plots, plot)(study, target_name=metric)
            figure = axes.figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            figure.savefig(Path(sweep_dir) / name, dpi=100)
            plt.close(figure)
            written.append(name)
        except Exception as error:  # a picture must not fail a search that has ended
            log.warning("%s not drawn: %s", name, error)
    return written


def metric_value(value) -> float | None:
    """A job's return value as a trial value: a finite float, else None (the trial failed)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
