"""hydra/launcher=vectorized: the jobs a sweeper hands over, trained as populations, each in one
Lightning fit (hydrafit.engine.population), every job still an ordinary run directory.

    hydrafit-train -m hydra/launcher=vectorized optimizer.lr=0.001,0.003,0.01,0.03 seed=range(1,31)
    hydrafit-train -m hydra/launcher=vectorized hydra.launcher.max_population=64 seed=range(1,201)

It composes each job's config as Hydra's BasicLauncher does, groups the jobs whose configs
differ only in vectorisable keys, trains each group, then runs every job through Hydra's own
run_job (its .hydra/ record, job callbacks such as the sweep summary, its JobReturn) with a task
that writes that member's results. A job that cannot join a population runs as BasicLauncher
runs it. torch is imported only when a sweep launches (Hydra scans this module at startup).
"""
# No `from __future__ import annotations`: see hydrafit.sweeps.resumable.
import contextlib
import gc
import logging
import os
import pickle
import signal
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (JobReturn, JobRuntime, JobStatus, configure_log, env_override, filter_overrides,
                              run_job, setup_globals)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydrafit.compat.hydra import apply_overrides, job_return, overrides_dirname, returned_value
from hydrafit.config.errors import ConfigError
from hydrafit.config.validate import validate
from hydrafit.engine.startup import import_lightning
from hydrafit.launch.processes import forked, picklable, process_count, share
from hydrafit.report.status import RunStopped
from hydrafit.rundir.files import as_write_error, write_failure
from hydrafit.rundir.owner import owner_record
from hydrafit.rundir.records import save_record
from hydrafit.sweeps.resumable import consecutive_runs

log = logging.getLogger(__name__)


class VectorizedLauncher(Launcher):
    composes_jobs_first = True  # every job of a batch, before any starts (ResumableSweeper reads it)

    def __init__(self, max_population: Optional[int] = None, processes: Optional[int] = None) -> None:
        self.max_population, self.processes = max_population, processes
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None
        self.compositions: dict = {}  # config-group overrides -> their composed config, pickled (compose)
        self.pbt = None  # hydrafit.sweeps.pbt.Policy: the jobs are one PBT population (PBTSweeper sets it)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.launch_numbered(job_overrides, range(initial_job_idx, initial_job_idx + len(job_overrides)))

    def launch_numbered(self, job_overrides: Sequence[Sequence[str]], numbers: Sequence[int]) -> Sequence[JobReturn]:
        """launch() with each job's number given: a resumed sweep's unfinished jobs (or an Optuna
        search's trials between another worker's) need not be consecutive to share a population
        (hydrafit.sweeps.resumable.launch_jobs)."""
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs locally, vectorised")
        # Python's cycle collector walks every object it tracks, again and again while hundreds of
        # job configs are built and written: off for the batch, 480 jobs are composed and checked
        # in 6.5 s, not 10, on this project's CPU, with the same peak memory (594 MB).
        gc.disable()
        try:
            return self.launch_jobs(job_overrides, list(numbers), sweep_dir)
        finally:
            gc.enable()

    def launch_jobs(self, job_overrides, numbers: List[int], sweep_dir: Path) -> Sequence[JobReturn]:
        jobs = [(list(o), n) for o, n in zip(job_overrides, numbers)]
        for overrides, idx in jobs:
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        configs, tasks = map(list, zip(*self.compose_all(jobs)))
        original = HydraConfig.instance().cfg  # preparing each job sets it
        try:
            built = self.prepare_all(configs, tasks)
        finally:
            HydraConfig.instance().cfg = original
        from hydrafit.launch.grouping import group, one_population

        returns: List[Optional[JobReturn]] = [None] * len(configs)
        stop: Optional[SystemExit] = None
        plan = group(tasks, self.max_population)
        if self.pbt is not None:
            one_population(plan, [c.hydra.job.num for c in configs], built, self.max_population)
        for jobs, why in plan:
            if stop is not None:
                break
            stop = self.run_population(jobs, configs, tasks, built, returns, sweep_dir) if why is None and len(jobs) > 1 \
                else self.run_alone(jobs[0], configs, returns)  # a population of one is an ordinary run
            HydraConfig.instance().cfg = original
        if stop is not None:
            raise stop
        return [r for r in returns if r is not None]

    def compose_all(self, jobs: List[tuple]) -> List[tuple]:
        """compose() of each of `jobs` ((overrides, job number)). A sweep started from the command
        line has torch and Lightning still to import (~4 s on this project's CPU, on one core):
        processes forked before that import compose jobs meanwhile, and this one joins them once
        it has imported (share). Composing takes ~8 ms a job; reading one back ~2.4."""

        n = process_count(len(jobs), self.processes, per=1) if "pytorch_lightning" not in sys.modules else 1
        return share(jobs, lambda job: self.compose(*job), n, meanwhile=import_lightning)

    def prepare_all(self, configs: List[DictConfig], tasks: List[Optional[DictConfig]]) -> list:
        """prepare() of each job: its population member (or None), with tasks[i] set to None for
        a job that does not validate. Shared with processes forked from this one (process_count,
        share), which send back each member's datamodule and module (~1.3 ms a job to read, of the
        ~14 it takes to validate and build on this project's CPU)."""
        import torch

        from hydrafit.engine.population import Member

        def prepared(i: int) -> tuple:  # (valid, (datamodule, module) of its member, or None)
            task, member = self.prepare(configs[i], tasks[i])
            return task is not None, member and (member.datamodule, member.module)

        n = 1 if torch.cuda.is_initialized() else process_count(len(configs), self.processes)  # CUDA does not survive a fork
        first = prepared(0)  # before forking: the imports and caches it fills are theirs too
        built = []
        for i, (valid, parts) in enumerate([first, *share(range(1, len(configs)), prepared, n)]):
            tasks[i] = tasks[i] if valid else None
            built.append(parts and Member(tasks[i], *parts))
        return built

    def prepare(self, config: DictConfig, task: DictConfig) -> tuple:
        """(task config, population member) of a job: its task config, or None if it does not
        validate (validated); the member its single run would train (member), or None where it
        runs alone."""
        task = self.validated(config, task)
        return task, self.member(config, task)

    def member(self, config: DictConfig, task: Optional[DictConfig]):
        """The job's population member (hydrafit.engine.population.Member), built as its single run
        builds it; None for a job that runs alone: an invalid or not vectorisable config, or a
        problem its single run reports (a data file that cannot be read)."""
        from hydrafit.engine.population import Member
        from hydrafit.engine.single import build_model
        from hydrafit.launch.grouping import not_vectorized

        if task is None or not_vectorized(task):
            return None
        current(config)
        try:
            return Member(task, *build_model(task, announce=False))
        except ConfigError:
            return None

    def compose(self, overrides: List[str], idx: int) -> tuple:
        """A job's config, as BasicLauncher composes it (load_sweep_config), and its task config
        (the same without `hydra`), except that jobs whose config-group choices are the same share
        one composition of them: each job is a copy with its own value overrides (optimizer.lr=,
        seed=) applied by Hydra's own override code, as load_configuration applies them. A
        composition costs ~0.25 s on this project's CPU (two minutes for 480 jobs); a copy with
        its values ~3 ms (unpickled: deepcopy takes 12, masking the task out of the config 5).
        The override records (hydra.overrides, hydra.job.override_dirname) are the job's own, as
        Hydra writes them."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(overrides)
        choices = self.config.hydra.runtime.choices
        groups = tuple(o.input_line for o in parsed if o.key_or_group in choices or o.package is not None)
        if groups not in self.compositions:
            composed = self.hydra_context.config_loader.load_sweep_config(self.config, list(groups))
            self.compositions[groups] = (pickle.dumps(composed), pickle.dumps(
                OmegaConf.masked_copy(composed, [k for k in composed if k != "hydra"])))
        config, task_config = (pickle.loads(p) for p in self.compositions[groups])
        values = [o for o in parsed if o.input_line not in groups]
        apply_overrides(values, config)  # Hydra's own semantics of =, +, ~, ++
        task = [o for o in parsed if not o.is_hydra_override()]
        apply_overrides([o for o in values if not o.is_hydra_override()], task_config)
        with open_dict(config.hydra):
            config.hydra.overrides.task = [o.input_line for o in task]
            config.hydra.overrides.hydra = [*self.config.hydra.overrides.hydra,
                                            *(o.input_line for o in parsed if o.is_hydra_override())]
            naming = config.hydra.job.config.override_dirname
            config.hydra.job.override_dirname = overrides_dirname(task, naming)
        for made in (config, task_config):
            OmegaConf.copy_cache(from_config=self.config, to_config=made)  # as load_sweep_config
        with open_dict(config):
            config.hydra.job.id = idx
            config.hydra.job.num = idx
        job_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):  # as run_job sets it
            config.hydra.runtime.output_dir = str(job_dir.absolute())
        return config, task_config

    @staticmethod
    def validated(config: DictConfig, task: DictConfig) -> Optional[DictConfig]:
        """The job's task config (without `hydra`; Hydra's runtime is the job's, as compose set
        it, so its paths resolve), or None if it does not validate: the ordinary path then
        records the failure in the job's own directory."""

        current(config)
        try:
            validate(task)
        except ConfigError:
            return None
        return task

    def run_alone(self, i: int, configs, returns) -> Optional[SystemExit]:
        """A job outside any population: the ordinary run, as BasicLauncher runs it."""
        return self.run(i, configs, returns, self.task_function)

    def run(self, i: int, configs, returns, task) -> Optional[SystemExit]:
        """Hydra's run_job for job i; the SystemExit a job callback raised (the sweep summary on
        Ctrl-C) is returned, so that the rest of its population is still written."""
        try:
            returns[i] = run_job(hydra_context=self.hydra_context, task_function=task, config=configs[i],
                                 job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        except SystemExit as stop:
            return stop
        finally:
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return None

    def run_member(self, i: int, configs, tasks, returns, task, recorded: bool = False) -> Optional[SystemExit]:
        """Hydra's run_job for population member i (the same .hydra/ record, job logging, env_set,
        chdir, job callbacks and JobReturn), minus the three copies of the job's config run_job
        makes (set_config's and two deepcopies; its task config is validated()'s): ~40 ms of a
        member's ~110 ms on this project's CPU (benchmarks/, vec rows). `recorded`: its .hydra/
        record is written already (record_members)."""
        config = configs[i]
        hydra = config.hydra
        out = Path(hydra.runtime.output_dir)
        callbacks = self.hydra_context.callbacks
        original, cwd = HydraConfig.instance().cfg, os.getcwd()
        ret = JobReturn(overrides=list(hydra.overrides.task), cfg=tasks[i], hydra_cfg=config, working_dir=cwd)
        try:
            current(config)
            with env_override(hydra.job.env_set):
                try:  # a disk that will not take the job's record fails the job, not the launcher
                    self.enter(config, tasks[i], ret, recorded)
                    callbacks.on_job_start(config=config, task_function=task)
                    ret.return_value, ret.status = task(tasks[i]), JobStatus.COMPLETED
                except Exception as error:
                    ret.return_value, ret.status = failed(error, out), JobStatus.FAILED
            ret.task_name = JobRuntime.instance().get("name")
            callbacks.on_job_end(config=config, job_return=ret)
            returns[i] = ret
        except SystemExit as stop:
            return stop
        finally:  # Hydra's logging is restored once the population is written (run_population)
            HydraConfig.instance().cfg = original
            os.chdir(cwd)
        return None

    @staticmethod
    def enter(config: DictConfig, task: DictConfig, ret: JobReturn, recorded: bool) -> None:
        """What run_job does before a job's task: its directory (the working one with
        hydra.job.chdir), its job logging, its .hydra/ record (unless `recorded`)."""
        hydra = config.hydra
        out = Path(hydra.runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        if hydra.job.chdir:
            os.chdir(out)
            ret.working_dir = str(out)
        configure_log(hydra.job_logging, hydra.verbose)
        if hydra.output_subdir is not None and not recorded:
            save_record(config, task, out / hydra.output_subdir)

    def write_members(self, member_tasks: dict, configs, tasks, returns, recorded: bool) -> Optional[SystemExit]:
        """run_member for every member of a population, shared with writer processes forked from
        this one (process_count, share), each writing members' run directories and running their
        job callbacks, as hydra/launcher=joblib's workers run theirs. Why: a member's directory
        costs ~50 ms of Python on this project's CPU (figure, TensorBoard, checkpoint, metrics,
        summary): most of a 480-job sweep, whose population trains in ~3 s. `recorded`:
        record_members wrote their .hydra/ records."""
        def written(i: int) -> tuple:  # what i's JobReturn holds besides the configs, and the exit code a callback asked for
            stop = self.run_member(i, configs, tasks, returns, member_tasks[i], recorded)
            ret = returns[i]
            fields = ret and dict(status=ret.status, task_name=ret.task_name, working_dir=ret.working_dir,
                                  value=picklable(returned_value(ret)))
            return fields, stop and stop.code

        def lost(process) -> None:  # a member written twice would hold two TensorBoard event files
            raise RuntimeError(f"a writer process of the population died (exit code {process.exitcode}); "
                               f"resume_sweep= reruns its unfinished jobs")

        jobs = list(member_tasks)
        stop = None
        for i, (fields, code) in zip(jobs, share(jobs, written, process_count(len(jobs), self.processes), lost=lost)):
            returns[i] = job_return(overrides=list(configs[i].hydra.overrides.task), cfg=tasks[i],
                                    hydra_cfg=configs[i], **fields) if fields else None
            stop = stop or (SystemExit(code) if code is not None else None)
        return stop

    @staticmethod
    def record_members(jobs: List[int], configs, tasks, members: dict):
        """A forked process that writes each member's `running` metrics.json (record_started, owned
        by this process, which trains them) and the .hydra/ record of each of `jobs` (save_record)
        while this one trains their population, on a core that would idle meanwhile: ~12 ms a job
        on this project's CPU, 6 s of a 480-job sweep. None where fork() is not how Python starts
        processes: this one writes the running records, run_member each .hydra/ record. Ctrl-C
        leaves it to finish (a few seconds): the interrupted jobs are written with their records too."""
        owner = owner_record()
        if sys.platform != "linux":
            VectorizedLauncher.record_started(members, configs, owner)
            return None

        def record() -> None:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
            VectorizedLauncher.record_started(members, configs, owner)
            try:
                for i in jobs:
                    hydra = configs[i].hydra
                    if hydra.output_subdir is not None:
                        save_record(configs[i], tasks[i], Path(hydra.runtime.output_dir) / hydra.output_subdir)
            except OSError:  # a full disk: run_member writes each record again, and fails its job
                raise SystemExit(1)  # (an exit code, not a traceback)

        return forked(record)

    @staticmethod
    def record_started(members: dict, configs, owner: dict) -> None:
        """Each member's metrics.json says `running`, owned by `owner` (owner_record of the
        process that trains them)."""
        from hydrafit.report.member import write_started

        original = HydraConfig.instance().cfg
        try:
            for i, member in members.items():
                current(configs[i])  # the member's paths resolve against its own job
                with contextlib.suppress(OSError):  # a full disk: its results fail again, and say so
                    write_started(member, owner)
        finally:
            HydraConfig.instance().cfg = original

    def run_population(self, jobs: List[int], configs, tasks, built, returns, sweep_dir: Path) -> Optional[SystemExit]:
        """Fit the members `built` (prepare) together, write each job (and a PBT run's lineage)."""
        from hydrafit.engine.pbt import Exploitation
        from hydrafit.engine.population import fit, load_results
        from hydrafit.report.figure import fit_images
        from hydrafit.report.lineage import write_lineage
        from hydrafit.report.member import member_task
        from hydrafit.sweeps.pruning import member_pruning

        members = {i: built[i] for i in jobs if built[i] is not None}
        alone = [i for i in jobs if built[i] is None]
        if len(members) == 1:  # a population of one is an ordinary run
            alone, members = [*members, *alone], {}
        recorder = self.record_members(jobs, configs, tasks, members)
        stop, member_tasks = None, {}
        if members:
            numbers = consecutive_runs([configs[i].hydra.job.num for i in members])
            log.info("vectorized: training jobs %s as one population of %d", " ".join(
                f"#{r[0]}" + (f"-#{r[-1]}" if len(r) > 1 else "") for r in numbers), len(members))
            population = list(members.values())
            outcome = fit(population, sweep_dir, spare_core=recorder is not None,
                          pruning=member_pruning(population, [configs[i].hydra for i in members]),
                          pbt=self.pbt and Exploitation(self.pbt, [m.cfg for m in population]))
            load_results(population, outcome)
            if outcome.pbt is not None:
                write_lineage(sweep_dir, outcome, [configs[i].hydra.job.num for i in members], self.pbt)
            images = fit_images(population, outcome)
            member_tasks = {i: member_task(population[k], outcome, k, len(members), images[k])
                            for k, i in enumerate(members)}
        if recorder is not None:
            recorder.join()
        if member_tasks:
            try:
                stop = self.write_members(member_tasks, configs, tasks, returns,
                                          recorded=recorder is not None and recorder.exitcode == 0)
            finally:
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        for i in sorted(alone):
            stop = self.run_alone(i, configs, returns) or stop
        return stop


def failed(error: Exception, out: Path) -> Exception:
    """A member's failure as its JobReturn holds it (a disk's error as the WriteError that names
    the path), recorded in its metrics.json as a single run records one (hydrafit.api.run); a stop
    (RunStopped: diverged, interrupted, pruned) is recorded there already."""
    if isinstance(error, RunStopped):
        return error
    write_failure(out / "metrics.json", error)
    return as_write_error(error, out) or error


def current(config: DictConfig) -> None:
    """Make job `config` Hydra's current one (HydraConfig.get(), ${hydra:...}) as set_config
    does, without set_config's copy of its hydra node (~8 ms a job): HydraConfig.get() reads
    `.cfg.hydra`, which the job's own config holds. Its hydra node is read-only, as set_config
    makes it."""
    OmegaConf.set_readonly(config.hydra, True)
    HydraConfig.instance().cfg = config
