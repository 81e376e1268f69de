"""hydra/sweeper=optuna, hydrafit's Optuna sweeper (conf/hparams_search/optuna.yaml selects it): an
Optuna study, persisted, that asks hydra.sweeper.n_jobs trials at a time and hands them to the
configured launcher as one batch of jobs. Replaces hydra-optuna-sweeper, which pins optuna<3.

    hydrafit-train -m hparams_search=optuna                             # 20 trials
    hydrafit-train -m hparams_search=optuna hydra.sweeper.pruner=median
    hydrafit-train -m resume_sweep=outputs/multiruns/<date>_<time> hydra.sweeper.n_trials=40

- The study is stored in hydra.sweeper.storage (an SQLAlchemy URL), by default
  <sweep dir>/optuna.db; each trial records its job directory (user attribute `job_dir`).
- A trial is a job like a grid's, numbered by its trial number: <sweep dir>/<trial number>/.
- n_trials is the size of the search: the sweeper stops once the study holds n_trials completed
  or pruned trials (counting those other workers are running), so a failed trial is replaced.
- hydra.sweeper.join=true joins an existing study of that name (other workers on the same
  storage; all may share one sweep directory, as trial numbers never collide); without it an
  existing study is refused rather than mixed with.
- resume_sweep= (through hydra/sweeper=resumable, hydrafit's default) continues the recorded
  search: trials left running by a killed sweep are failed, set aside and asked again.
- Heartbeats (hydra.sweeper.heartbeat_interval, grace_period): a worker records one for each of
  its running trials; a trial whose heartbeat stopped (its worker was killed) is failed, set aside
  and asked again by a worker still running (at most max_retry times in a row), so that a search
  shared by several workers still reaches n_trials. A worker with nothing left to ask waits while
  other workers run trials the search still needs.
"""
# No `from __future__ import annotations`: see hydrafit.sweeps.resumable.
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from hydrafit.compat.hydra import returned_value
from hydrafit.config.errors import refuse
from hydrafit.config.plugins import OptunaSweeperConf
from hydrafit.sweeps.grammar import parse_sweep
from hydrafit.sweeps.resumable import ResumableSweeper, launch_jobs
from hydrafit.sweeps.study import (ACTIVE, FINISHED, counts, draw_pictures, fail_stale, first_heartbeat,
                                   heartbeats, load, make_pruner, metric_value, retries, search_space, storage,
                                   storage_url, watched)

log = logging.getLogger(__name__)

# How often a worker with nothing left to ask looks at the study again (a query of its trials):
# it stops within this long of the other workers' last trial ending.
WAIT_SECONDS = 1.0


def quoted(value: str) -> str:
    """A string as a quoted Hydra override value (paths and URLs hold ':', '@', spaces)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def override_value(value: Any) -> str:
    """A value (a pruner node, a trial's parameter) as Hydra's override grammar writes it."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    return str(value)


class OptunaSweeper(Sweeper):
    def __init__(self, n_trials: int, n_jobs: int, direction: str, study_name: str,
                 storage: Optional[str], join: bool, pruner: Any, sampler: Any,
                 params: Optional[Dict[str, str]] = None,
                 heartbeat_interval: Optional[int] = OptunaSweeperConf.heartbeat_interval,
                 grace_period: Optional[int] = OptunaSweeperConf.grace_period,
                 max_retry: Optional[int] = OptunaSweeperConf.max_retry):
        self.n_trials, self.n_jobs, self.direction = n_trials, n_jobs, direction
        self.study_name, self.storage, self.join = study_name, storage, bool(join)
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.max_retry = max_retry
        self.waiting = False  # for other workers' trials (logged once)
        plain = lambda node: OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        self.pruner, self.sampler, self.params = plain(pruner), dict(plain(sampler)), plain(params) or {}
        self.resume_from: Optional[Path] = None  # set by ResumableSweeper for resume_sweep=

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

        self.url = storage_url(self.storage, self.sweep_dir)
        self._check()

    def _check(self) -> None:
        """Refuse bad settings in one line (exit 2) before a study is created."""

        for key in ("n_trials", "n_jobs"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                refuse(f"hydra.sweeper.{key} must be an integer >= 1, got {value!r}")
        if self.direction not in ("minimize", "maximize"):
            refuse(f"hydra.sweeper.direction must be minimize or maximize, got {self.direction!r}")
        try:
            make_pruner(self.pruner)
        except Exception as error:  # a name we do not know, or a node Hydra cannot instantiate
            refuse(str(error) if isinstance(error, ValueError) else f"hydra.sweeper.pruner: {error}")
        self._check_heartbeat()

    def _check_heartbeat(self) -> None:
        whole = lambda value, least: isinstance(value, int) and not isinstance(value, bool) and value >= least
        for key, least in (("heartbeat_interval", 1), ("grace_period", 1), ("max_retry", 0)):
            value = getattr(self, key)
            if value is not None and not whole(value, least):
                refuse(f"hydra.sweeper.{key} must be an integer >= {least} or null, got {value!r}")
        interval, grace = self.heartbeat_interval, self.grace_period
        if interval is not None and grace is not None and grace <= interval:
            refuse(f"hydra.sweeper.grace_period must be greater than hydra.sweeper.heartbeat_interval "
                   f"({interval}), got {grace}: a live trial would look dead between two heartbeats")

    def sweep(self, arguments: List[str]) -> None:

        try:
            space, fixed = search_space(parse_sweep(arguments, self.params, self.hydra_context.config_loader))
        except ValueError as error:  # shuffle(), glob(): nothing Optuna can sample
            refuse(str(error))
        study = self._open_study()
        if self.resume_from is not None:
            self._retry_killed(study)
        budget = self.n_trials - counts(study)[0]
        log.info("Study %s in %s: %d of %d trials finished; searching %s", self.study_name, self.url,
                 counts(study)[0], self.n_trials, ", ".join(space) or "nothing")
        while budget > 0:
            fail_stale(study)  # a killed worker's trials: failed, and asked again (_retry_stale)
            batch = self._ask(study, min(self.n_jobs, budget), space)
            if batch:
                budget -= len(batch)
                self._run(study, batch, fixed)
            elif not self._wait_for_others(study):
                break  # the rest of the search is being run by other workers
        self._record(study)

    def _wait_for_others(self, study) -> bool:
        """Wait a moment, and say so, while other workers run trials the search still needs and
        their heartbeats would tell if they died (then this worker asks their trials again).
        Trials without heartbeats are their workers' to finish: False."""
        finished, _, waiting = counts(study)
        if self.heartbeat_interval is None or finished >= self.n_trials or not watched(study) + waiting:
            return False
        if not self.waiting:
            log.info("Waiting for %d trials of other workers (a trial whose worker stops is asked "
                     "again here within hydra.sweeper.grace_period)", watched(study))
            self.waiting = True
        time.sleep(WAIT_SECONDS)
        return True

    def _open_study(self):
        """Create the study; load it when resuming or joining. An existing study is otherwise
        refused: two searches under one name would silently mix."""
        import optuna


        existing = load(self.url, self.study_name)
        if existing is not None and not (self.join or self.resume_from):
            refuse(f"hydra.sweeper.study_name: a study '{self.study_name}' already exists in "
                 f"{self.url}; join it (hydra.sweeper.join=true), continue it "
                 f"(resume_sweep=<its sweep dir>) or give another name")
        if existing is None and self.resume_from is not None:
            refuse(f"resume_sweep: no study '{self.study_name}' in {self.url}: nothing to continue")
        self.store = storage(self.url, self.heartbeat_interval, self.grace_period, on_stale=self._retry_stale)
        sampler = dict(self.sampler)
        if self.join:  # workers started with one seed would all draw the same trials
            sampler["seed"] = None
        elif existing is not None and sampler.get("seed") is not None:
            # A resumed sampler must not replay the first one's draws: a seed of its own, reproducible.
            sampler["seed"] = int(sampler["seed"]) + len(existing.trials)
        return optuna.create_study(
            study_name=self.study_name, storage=self.store, direction=self.direction,
            sampler=instantiate(sampler), pruner=make_pruner(self.pruner), load_if_exists=True)

    def _retry_killed(self, study) -> None:
        """Trials still RUNNING when resuming were cut off with their sweep (kill -9, a crash,
        Ctrl-C): fail them, move what they left to previous_attempts/, ask their parameters again."""
        from optuna.trial import TrialState


        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self._retry(study, trial)
            study.tell(trial.number, state=TrialState.FAIL)
            log.info("Trial #%d was cut off: failed, asked again", trial.number)

    def _retry_stale(self, study, trial) -> None:
        """The storage's callback for a trial failed because its heartbeat stopped (fail_stale):
        ask it again, unless it is the max_retry-th retry in a row (then a new trial takes its place)."""
        if self.max_retry is not None and retries(study, trial) >= self.max_retry:
            log.warning("Trial #%d: its worker stopped (no heartbeat for %s s); failed, not asked "
                        "again: hydra.sweeper.max_retry=%d retries in a row", trial.number, self._grace(),
                        self.max_retry)
            return
        self._retry(study, trial)
        log.warning("Trial #%d: its worker stopped (no heartbeat for %s s); failed, asked again",
                    trial.number, self._grace())

    def _grace(self) -> int:
        return self.grace_period or 2 * self.heartbeat_interval  # Optuna's default grace period

    def _retry(self, study, trial) -> None:
        """Ask `trial`'s parameters again as a trial of its own (user attribute retry_of: the
        summary lists the retry in its place); what the trial left moves to previous_attempts/."""
        job_dir = Path(trial.user_attrs.get("job_dir", self.sweep_dir / str(trial.number)))
        try:
            ResumableSweeper._set_aside(job_dir.parent, [trial.number])
        except OSError as error:  # another worker's directory: its files stay where they are
            log.warning("Trial #%d: %s not moved to previous_attempts/: %s", trial.number, job_dir, error)
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})

    def _ask(self, study, size: int, space: dict) -> list:
        """Up to `size` new trials, none beyond n_trials finished or running in the whole study
        (other workers included). A trial another worker's ask made surplus is failed unrun."""
        from optuna.trial import TrialState


        batch = []
        while len(batch) < size:
            finished, running, waiting = counts(study)
            if not waiting and finished + running >= self.n_trials:
                break
            with warnings.catch_warnings():  # "Heartbeat ... used with Study.optimize": see study.heartbeats
                warnings.filterwarnings("ignore", "Heartbeat", UserWarning)
                trial = study.ask(space)
            ahead = [t for t in study.get_trials(deepcopy=False)
                     if t.number < trial.number and t.state.name in FINISHED + ACTIVE]
            if len(ahead) >= self.n_trials:  # two workers asked at once for the last place
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=TrialState.FAIL)
                break
            trial.set_user_attr("job_dir", str((self.sweep_dir / str(trial.number)).resolve()))
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            first_heartbeat(self.store, self.study_name, trial)
            batch.append(trial)
        return batch

    def _run(self, study, batch: list, fixed: List[str]) -> None:
        """Launch the batch (jobs numbered by trial number, resumable.launch_jobs) and tell the
        study how each ended."""

        jobs = {t.number: [*fixed, *(f"{k}={override_value(v)}" for k, v in t.params.items()),
                           *self._job_hydra_overrides()] for t in batch}
        trials = {t.number: t for t in batch}
        with heartbeats(self.store, self.study_name, list(trials)):
            for number, result in launch_jobs(self.launcher, jobs):
                self._tell(study, trials[number], result)

    def _job_hydra_overrides(self) -> List[str]:
        """What each job needs to find its trial (hydrafit.sweeps.pruning) and its directory,
        given explicitly: a resumed search's jobs are composed from the resume command."""
        return [f"hydra.sweep.dir={quoted(str(self.sweep_dir))}",
                f"hydra.sweeper.storage={quoted(self.url)}",
                f"hydra.sweeper.study_name={quoted(self.study_name)}",
                f"hydra.sweeper.pruner={override_value(self.pruner)}"]

    @staticmethod
    def _tell(study, trial, result) -> None:
        """A job's end as the trial's state: its optimized metric (completed), pruned
        (RunStopped with status pruned), or failed (anything else, or no finite value)."""
        from optuna.trial import TrialState


        value, state = None, TrialState.FAIL
        if result.status == JobStatus.COMPLETED:
            value = metric_value(result.return_value)
            if value is None:
                log.warning("Trial #%d returned %r, not a number: failed", trial.number, result.return_value)
            else:
                state = TrialState.COMPLETE
        elif getattr(returned_value(result), "status", None) == "pruned":
            # The job's exception (RunStopped for a pruned run). Not through .return_value,
            # which prints "Error executing job" on stderr: wrong for a pruned trial.
            state = TrialState.PRUNED
        told = study.tell(trial, value, state=state, skip_if_finished=True)
        if told.state != state:  # this worker went unheard for grace_period s: failed, and retried
            log.warning("Trial #%d had been failed by another worker (no heartbeat from here for "
                        "hydra.sweeper.grace_period): its result is not in the study", trial.number)

    def _record(self, study) -> None:
        """When the search ends: Optuna's pictures and the best trial (optimization_results.yaml)."""

        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        draw_pictures(study, self.sweep_dir, str(self.config.get("optimized_metric", "Objective Value")))
        try:
            best = study.best_trial
        except ValueError:  # no completed trial
            return
        OmegaConf.save(OmegaConf.create({"name": "optuna", "study_name": self.study_name,
                                         "storage": self.url, "best_trial": best.number,
                                         "best_params": best.params, "best_value": best.value}),
                       self.sweep_dir / "optimization_results.yaml")
