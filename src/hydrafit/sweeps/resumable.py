"""hydra/sweeper=resumable, hydrafit's default sweeper: Hydra's grid (basic) sweeper that can
continue a sweep in its own directory.

    hydrafit-train -m optimizer.lr=0.003,0.01,0.03 model.hidden_dims=[8],[16]   # as BasicSweeper
    hydrafit-train -m resume_sweep=outputs/multiruns/<date>_<time>              # only what is left
    hydrafit-train -m resume_sweep=<an Optuna search's dir> hydra.sweeper.n_trials=40  # more trials
    hydrafit-train -m resume_sweep=<sweep dir> hydra/launcher=basic             # another launcher

Resuming rebuilds the job list from the sweep's multirun.yaml and launches only the jobs without a
`completed` metrics.json, under their own job numbers (so into their own directories), with the
launcher the sweep recorded (hydra.launcher, e.g. hydra/launcher=vectorized with its settings),
unless this command names one (hydra/launcher=...). Completed jobs are not touched. A job that was
interrupted (Ctrl-C, SIGTERM) or died (killed: hydrafit.rundir.files.true_status) continues from
its own checkpoints/last.ckpt as `resume=` continues a run (the job gets resume=<its directory>);
any other, or one whose last.ckpt does not load, starts again, what it left set aside. A sweep
that a live process still runs is refused (refuse_running).
A search of hydra/sweeper=optuna (hparams_search=optuna) is handed to that sweeper, built from the
search's record with its n_trials replaced by this command's hydra.sweeper.n_trials, if given.
hydrafit.sweeps.summary.check_resume has refused a resume_sweep= that cannot work (a recorded
launcher whose plugin is not installed included) before this runs.
"""
# No `from __future__ import annotations`: Hydra's ConfigStore reads the Conf dataclass's
# annotations as types.
import copy
import logging
import time
from itertools import groupby
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydrafit.compat.hydra import BasicSweeper
from hydrafit.config.errors import ConfigError
from hydrafit.rundir.checkpoints import read_last
from hydrafit.rundir.files import read_metrics, running_process
from hydrafit.sweeps.grammar import grid_jobs
from hydrafit.sweeps.records import PBT_STATE, Plan, job_dirs

log = logging.getLogger(__name__)

LAUNCHER = "hydra/launcher"
CONTINUABLE = ("interrupted", "died")  # ends after which a job continues from its own last.ckpt


def consecutive_runs(numbers: List[int]) -> List[List[int]]:
    """[1, 2, 5] -> [[1, 2], [5]]: a launcher numbers the jobs of one launch consecutively."""
    return [[n for _, n in run] for _, run in groupby(enumerate(numbers), lambda p: p[1] - p[0])]


def hydra_overrides(config: DictConfig) -> list:
    """The Hydra overrides (hydra/launcher=..., hydra.sweep.dir=...) of the command `config` records, parsed."""
    return OverridesParser.create().parse_overrides([str(o) for o in config.hydra.overrides.hydra])


def launcher_choice(config: DictConfig) -> str:
    return str(config.hydra.runtime.choices.get(LAUNCHER))


def resume_launcher(config: DictConfig, recorded: DictConfig) -> Tuple[DictConfig, str]:
    """The config a resume of the sweep `recorded` (its multirun.yaml) launches its jobs with, and
    a line saying which launcher that is and why: this command's (`config`) if it names one
    (hydra/launcher=...), else the one the sweep ran with, so that a vectorised sweep resumes
    vectorised. The recorded launcher's own overrides are added to the command's, as each job is
    composed from those: its .hydra/ record then names the launcher that ran it."""
    launch = copy.deepcopy(config)  # the sweep's own config stays as Hydra's callbacks see it
    if any(o.key_or_group == LAUNCHER for o in hydra_overrides(config)):
        return launch, f"{LAUNCHER}={launcher_choice(config)}, named on the command line"
    own = [o.input_line for o in hydra_overrides(recorded)
           if o.key_or_group == LAUNCHER or o.key_or_group.startswith("hydra.launcher.")]
    with read_write(launch.hydra), open_dict(launch.hydra):
        launch.hydra.launcher = recorded.hydra.launcher
        launch.hydra.runtime.choices[LAUNCHER] = launcher_choice(recorded)
        launch.hydra.overrides.hydra = [*own, *launch.hydra.overrides.hydra]
    return launch, f"{LAUNCHER}={launcher_choice(recorded)}, the launcher the sweep ran with"


def installed(launcher: DictConfig) -> bool:
    """Whether Hydra's plugin scan found the launcher class the node `launcher` names."""
    found = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Launcher)}
    return str(launcher.get("_target_")) in found


def launch_jobs(launcher: Launcher, jobs: Dict[int, List[str]]) -> List[tuple]:
    """[(job number, JobReturn)] of the jobs {number: overrides}, launched under their own numbers
    (so into their own directories): all at once where the launcher takes numbers
    (hydra/launcher=vectorized: one population), else one launch per run of consecutive numbers
    (Hydra's launch numbers its jobs consecutively)."""
    numbers = sorted(jobs)
    if hasattr(launcher, "launch_numbered"):
        return list(zip(numbers, launcher.launch_numbered([jobs[n] for n in numbers], numbers)))
    return [pair for block in consecutive_runs(numbers)
            for pair in zip(block, launcher.launch([jobs[n] for n in block], initial_job_idx=block[0]))]


def continuing_jobs(sweep_dir: Path, statuses: Dict[int, str]) -> List[int]:
    """The unfinished jobs (`statuses`: true status by number, of those that left a directory)
    that continue from their own last.ckpt: interrupted or died, with a checkpoint that loads.
    Each job's lot is logged: which continue from which epoch, which start again and why."""
    continuing = []
    for n, status in sorted(statuses.items()):
        if status not in CONTINUABLE:  # a `running` one here says nothing of its process (refuse_running)
            log.info("Job #%d starts again: %s", n, status)
            continue
        record = [sweep_dir / str(n) / ".hydra" / name for name in ("config.yaml", "hydra.yaml")]
        if not all(path.is_file() for path in record):  # the config it continues with (resumed_run)
            log.info("Job #%d starts again: %s, but its .hydra/ record is incomplete", n, status)
            continue
        try:
            checkpoint, _ = read_last(sweep_dir / str(n))
        except ValueError as error:
            log.info("Job #%d starts again: %s, but %s", n, status, error)
            continue
        log.info("Job #%d continues from its last.ckpt (epoch %d): %s", n, checkpoint["epoch"], status)
        continuing.append(n)
    return continuing


def refuse_running(sweep_dir: Path, plan: Plan) -> None:
    """ConfigError if a live process still runs a job of the grid sweep (its launcher, or a
    worker of it): resuming would set the job's directory aside under it, or train it twice. A
    `running` record that does not say who runs it tells nothing: that job starts again. (An
    Optuna search tells running trials by its study: hydrafit.sweeps.optuna_sweeper.)"""
    if plan.trials is not None:
        return
    for n, job_dir in job_dirs(sweep_dir).items():
        owner = running_process(job_dir / "metrics.json")
        if owner is not None:
            raise ConfigError(f"resume_sweep: job #{n} of '{sweep_dir}' is still running ({owner}); wait for the "
                              f"sweep to end, or stop it (Ctrl-C) and resume it then")


class ResumableSweeper(Sweeper):
    """BasicSweeper, plus `resume_sweep=<sweep dir>`: run only that sweep's unfinished jobs.
    Wraps a BasicSweeper rather than subclassing it: Hydra's plugin scan re-executes the module
    of its core plugins, which would leave a subclass pointing at a stale BasicSweeper."""

    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None,
                 n_trials: Optional[int] = None):
        self.grid = BasicSweeper(max_batch_size=max_batch_size, params=params)
        self.n_trials = n_trials

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.grid.setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.task_function = task_function
        if getattr(self.grid.launcher, "composes_jobs_first", False):
            # Sweeper.validate_batch_is_legal composes every job to fail early, "repeating work the
            # launcher will do" in another process; hydra/launcher=vectorized composes every job of
            # a batch, in this process, before it starts any: twice would double its ~0.25 s a job.
            self.grid.validate_batch_is_legal = lambda batch: None

    def sweep(self, arguments: List[str]) -> Any:
        resume = next((a.split("=", 1)[1] for a in arguments if a.startswith("resume_sweep=")), None)
        if resume is None:
            return self.grid.sweep(arguments)
        sweep_dir = Path(str(self.grid.config.hydra.sweep.dir))
        original = OmegaConf.load(sweep_dir / "multirun.yaml")
        config, why = resume_launcher(self.grid.config, original)
        log.info("Resuming %s with %s", sweep_dir, why)
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")  # this invocation's record, next to the original
        OmegaConf.save(config, sweep_dir / f"multirun.resume_{stamp}.yaml")
        if str(original.hydra.sweeper._target_).endswith(".OptunaSweeper"):
            return self._search(original, sweep_dir, config)
        if str(original.hydra.sweeper._target_).endswith(".PBTSweeper"):
            return self._population(original, sweep_dir, config)
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.grid.hydra_context, task_function=self.task_function, config=config)
        jobs = self._grid(original.hydra.overrides.task, original.hydra.sweeper.get("params"))
        statuses = {n: read_metrics(d / "metrics.json")[0] for n, d in job_dirs(sweep_dir).items()}
        todo = [n for n in range(len(jobs)) if statuses.get(n) != "completed"]
        log.info("Resuming %s: %d of %d jobs completed; running %s", sweep_dir, len(jobs) - len(todo),
                 len(jobs), " ".join(f"#{n}" for n in todo) or "none")
        continuing = continuing_jobs(sweep_dir, {n: statuses[n] for n in todo if n in statuses})
        self._set_aside(sweep_dir, [n for n in todo if n not in continuing])
        batch = {n: [*jobs[n], f"hydra.sweep.dir={resume}"] for n in todo}
        for n in continuing:  # the job continues itself (hydrafit.engine.single.resumed_run)
            batch[n].append(f"resume={(sweep_dir / str(n)).absolute()}")
        if not getattr(launcher, "composes_jobs_first", False):  # see setup
            Sweeper.validate_batch_is_legal(self.grid, list(batch.values()))
        returns = [result for _, result in launch_jobs(launcher, batch)]
        for result in returns:
            _ = result.return_value  # raise the first failure, as BasicSweeper does
        return returns

    def _search(self, original: DictConfig, sweep_dir: Path, config: DictConfig) -> Any:
        """Continue the Optuna search recorded in `original` (its multirun.yaml) with its own
        sweeper settings and overrides, launched as `config` (resume_launcher) says."""

        settings = OmegaConf.to_container(original.hydra.sweeper, resolve=False)
        settings["sampler"] = OmegaConf.to_container(original.hydra.sweeper.sampler, resolve=True)
        if self.n_trials is not None:
            settings["n_trials"] = self.n_trials
        return self._hand_over(settings, original, sweep_dir, config)

    def _hand_over(self, settings: dict, original: DictConfig, sweep_dir: Path, config: DictConfig) -> Any:
        """The recorded sweeper (`settings`, its hydra.sweeper) built again and run on the sweep's
        own overrides, resuming `sweep_dir`, launched as `config` (resume_launcher) says."""
        sweeper = instantiate(settings, _convert_="all")
        sweeper.resume_from = sweep_dir
        with read_write(config.hydra), open_dict(config.hydra):
            # the jobs read their sweeper (hydra/launcher=vectorized: each member's Optuna trial
            # and pruner, sweeps.study.job_trial)
            config.hydra.sweeper = settings
        sweeper.setup(hydra_context=self.grid.hydra_context, task_function=self.task_function, config=config)
        return sweeper.sweep([str(o) for o in original.hydra.overrides.task])

    def _population(self, original: DictConfig, sweep_dir: Path, config: DictConfig) -> Any:
        """Continue the PBT run recorded in `original`: its whole population again, from the
        population it saved at its last interval (sweeps.records.PBT_STATE; from epoch 0 without
        one), each member's earlier attempt set aside (its files are written anew, lineage and
        every epoch's losses included)."""
        statuses = {n: read_metrics(d / "metrics.json")[0] for n, d in job_dirs(sweep_dir).items()}
        population = int(original.hydra.sweeper.population)
        if len(statuses) == population and set(statuses.values()) == {"completed"}:
            log.info("Resuming %s: the PBT run completed; nothing to run", sweep_dir)
            return []
        state = sweep_dir / PBT_STATE
        log.info("Resuming %s: the PBT population %s", sweep_dir,
                 "continues from its last saved interval" if state.exists() else "starts again (nothing saved)")
        self._set_aside(sweep_dir, sorted(statuses))
        return self._hand_over(OmegaConf.to_container(original.hydra.sweeper, resolve=True), original, sweep_dir,
                               config)

    def _grid(self, task_overrides, params) -> List[List[str]]:
        params = OmegaConf.to_container(params, resolve=False) if params else {}
        return grid_jobs(task_overrides, params, self.grid.hydra_context.config_loader)

    @staticmethod
    def _set_aside(sweep_dir: Path, numbers: Sequence[int]) -> None:
        """Move what an earlier attempt left in a job's directory to previous_attempts/, so the
        rerun starts clean (TensorBoard would otherwise merge both attempts into one run)."""
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
        for n in numbers:
            if (sweep_dir / str(n)).exists():
                target = sweep_dir / "previous_attempts" / f"{n}_{stamp}"
                target.parent.mkdir(exist_ok=True)
                (sweep_dir / str(n)).rename(target)
                log.info("Job #%d: the earlier attempt is now in %s", n, target)
