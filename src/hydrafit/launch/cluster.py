"""hydra/launcher=slurm and hydra/launcher=slurm_vectorized: a sweep's jobs as SLURM jobs through
submitit, each watched from its submission to its end.

    hydrafit-train -m hydra/launcher=slurm optimizer.lr=0.003,0.01,0.03
    hydrafit-train -m hydra/launcher=slurm_vectorized optimizer.lr=0.001,0.003,0.01,0.03 seed=range(1,17)

hydra-submitit-launcher submits the jobs, then waits on each one's result file: a job that cannot
start keeps the sweep waiting for ever, and one cancelled or killed before it wrote its result
either does too (a pending array task that is cancelled leaves no record in sacct) or ends the
sweep in a traceback. Here (hydrafit.launch.slurm's Queue and Watch, then Reporter):
- a request sbatch refuses ends the sweep in one line, sbatch's reason (exit code 2);
- the queue is read every few seconds (squeue; sacct once a job has left it): when none of the
  sweep's jobs has run for hydra.launcher.pending_timeout_min, the waiting ones are cancelled,
  each reported with squeue's reason;
- a job that ends without a result (cancelled, or killed by the cluster: TIMEOUT, NODE_FAIL,
  OUT_OF_MEMORY, ...) gets a metrics.json that says so (`cancelled` if it never recorded a start,
  `died` if it was killed while running: resume_sweep= continues it from its last.ckpt) and is
  handed to the job callbacks as a stopped job (RunStopped): the sweep summary lists it, one line;
- Ctrl-C cancels the sweep's jobs (a running one stops gracefully, `interrupted`), waits for them
  to end, and stops the sweep (exit code 130), resumable with resume_sweep=.
hydra/launcher=slurm runs each job as hydra-submitit-launcher runs it (the plugin class there is
the base of hydra_plugins.hydrafit_sweeper.slurm_launcher's); hydra/launcher=slurm_vectorized
runs each chunk of hydra.launcher.max_population jobs as one SLURM job, in which
hydrafit.launch.vectorized's launcher trains them as populations (Chunk).
"""
# No `from __future__ import annotations`: see hydrafit.sweeps.resumable.
import copy
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict, read_write

from hydrafit.compat.hydra import job_return
from hydrafit.launch.slurm import Ended, Queue, names
from hydrafit.launch.vectorized import VectorizedLauncher
from hydrafit.report.status import RunStopped
from hydrafit.rundir.files import RUNNING, write_json

log = logging.getLogger(__name__)


def run(queue: Queue, function, arguments: tuple, overrides: List[List[List[str]]], numbers: List[List[int]],
        config: DictConfig, hydra_context: HydraContext) -> List[JobReturn]:
    """The JobReturns of the sweep jobs `numbers` (with their `overrides`), run as one SLURM
    job for each tuple of `arguments` (`function` called on it): submitted to `queue`, watched
    until each has ended, the jobs of a SLURM job that returned nothing reported (Reporter).
    After Ctrl-C the sweep stops once they are (exit code 130)."""
    jobs = queue.submit(function, *arguments)
    log.info("Submitted SLURM job%s %s (%s); watching them (squeue -j %s)", "s" * (len(jobs) > 1),
             " ".join(job.job_id for job in jobs[:8]) + (" ..." if len(jobs) > 8 else ""),
             " ".join(names(numbers)), ",".join(sorted({job.job_id.split("_")[0] for job in jobs})))
    stopped, outcomes = queue.wait(jobs, numbers)
    reporter = Reporter(config, hydra_context)
    returns: List[JobReturn] = []
    for job, out, own, nums in zip(jobs, outcomes, overrides, numbers):
        if isinstance(out, Ended):
            returns += [reporter.report(o, n, out, job.job_id) for o, n in zip(own, nums)]
        else:  # a SLURM job of one sweep job returns its JobReturn; of a chunk, a list
            returns += out if isinstance(out, list) else [out]
    if stopped:
        log.error("Sweep stopped; continue it with: hydrafit-train -m resume_sweep=%s", config.hydra.sweep.dir)
        raise SystemExit(130)
    return returns


class Reporter:
    """Jobs that returned nothing, made known as jobs that ran are: their metrics.json (record) and
    the job callbacks (the sweep summary, its one line) with a JobReturn of RunStopped."""

    def __init__(self, config: DictConfig, hydra_context: HydraContext) -> None:
        self.config, self.hydra_context = config, hydra_context

    def report(self, overrides: List[str], num: int, ended: Ended, slurm_id: str) -> JobReturn:
        job_dir = Path(str(self.config.hydra.sweep.dir)) / str(num)
        status, why = record(job_dir, ended)
        config = self.stand_in(overrides, num, job_dir, slurm_id)
        ret = job_return(RunStopped(status, why), overrides=list(overrides), cfg=config, hydra_cfg=config,
                         status=JobStatus.FAILED, working_dir=os.getcwd(), task_name=str(config.hydra.job.name))
        self.hydra_context.callbacks.on_job_end(config=config, job_return=ret)
        return ret

    def stand_in(self, overrides: List[str], num: int, job_dir: Path, slurm_id: str) -> DictConfig:
        """Job `num`'s config as far as job callbacks read it: the sweep's, with the job's number,
        id, overrides and output dir (composing it would take ~0.25 s a job, for nothing)."""
        config = copy.deepcopy(self.config)
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.job.num, config.hydra.job.id = num, slurm_id
            config.hydra.overrides.task = list(overrides)
            config.hydra.runtime.output_dir = str(job_dir.absolute())
        return config


def record(job_dir: Path, ended: Ended) -> tuple:
    """(status, why) of a job whose SLURM job returned nothing, once its metrics.json says it: what
    the job recorded of its own end (interrupted, failed, ...) if it did; `died` where it recorded
    a start only (killed while running: resume_sweep= continues it from its last.ckpt); else
    `ended`'s (it never started, or ended before it recorded anything)."""
    path = job_dir / "metrics.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    data = data if isinstance(data, dict) else {}
    if data.get("status") not in (None, RUNNING):
        return str(data["status"]), str(data.get("error", ""))
    status = "died" if data.get("status") == RUNNING else ended.status
    job_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, {**data, "status": status, "error": ended.why})
    return status, ended.why


class Watched:
    """hydra/launcher=slurm: hydra-submitit-launcher's SlurmLauncher (the plugin class adds it as
    the base after this one: its settings, self.params, and the function each SLURM job runs,
    __call__), its jobs submitted and watched by a Queue."""

    def __init__(self, pending_timeout_min: Optional[float] = None, **params: Any) -> None:
        super().__init__(**params)
        self.queue = Queue(self.params, pending_timeout_min)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        numbers = list(range(initial_job_idx, initial_job_idx + len(job_overrides)))
        overrides = [list(o) for o in job_overrides]
        start(self.config, "one SLURM job each", overrides, numbers)
        n, state = len(numbers), Singleton.get_state()
        arguments = (overrides, ["hydra.sweep.dir"] * n, numbers, [f"job_id_for_{k}" for k in numbers], [state] * n)
        return run(self.queue, self, arguments, [[o] for o in overrides], [[k] for k in numbers], self.config,
                              self.hydra_context)


def start(config: DictConfig, how: str, job_overrides, numbers: List[int]) -> None:
    """The sweep dir created (submitit's folder is in it), the jobs logged as Hydra's launchers log them."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info("Launching %d jobs on SLURM, %s; sweep output dir: %s", len(numbers), how, sweep_dir)
    for n, overrides in zip(numbers, job_overrides):
        log.info("\t#%d : %s", n, " ".join(filter_overrides(overrides)))


@dataclass
class Chunk:
    """What one SLURM job of hydra/launcher=slurm_vectorized runs: hydrafit.launch.vectorized's
    launcher, rebuilt on the node from the sweep's context (pickled by submitit), on its jobs.
    Its JobReturns come back as the vectorised launcher returns them (each member's run dir and
    job callbacks are written on the node)."""

    hydra_context: HydraContext
    config: DictConfig
    task_function: TaskFunction
    max_population: Optional[int]
    processes: Optional[int]
    singletons: Dict[Any, Any]
    pbt: Any = None  # hydrafit.sweeps.pbt.Policy of a PBT run (hparams_search=pbt), as the launcher got it

    def __call__(self, job_overrides: List[List[str]], numbers: List[int]) -> List[JobReturn]:
        Singleton.set_state(self.singletons)
        # the CPUs SLURM gave the job, not the node's (no task binding: sched_getaffinity sees all)
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or None
        launcher = VectorizedLauncher(self.max_population, self.processes or cpus)
        launcher.pbt = self.pbt
        launcher.setup(hydra_context=self.hydra_context, task_function=self.task_function, config=self.config)
        return list(launcher.launch_numbered(job_overrides, numbers))


class SlurmVectorizedLauncher(Launcher):
    """hydra/launcher=slurm_vectorized: the jobs in chunks of max_population, each chunk one SLURM
    job (Chunk) submitted and watched by a Queue. A resumed sweep's unfinished jobs share chunks
    whatever their numbers (launch_numbered, as hydra/launcher=vectorized)."""

    composes_jobs_first = True  # on the node, every job of a chunk before any starts (hydrafit.sweeps.resumable)

    def __init__(self, max_population: Optional[int] = None, processes: Optional[int] = None,
                 pending_timeout_min: Optional[float] = None, **params: Any) -> None:
        self.max_population, self.processes = max_population, processes
        self.queue = Queue(params, pending_timeout_min)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None
        self.pbt = None  # hydrafit.sweeps.pbt.Policy: the jobs are one PBT population (PBTSweeper sets it)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return self.launch_numbered(job_overrides, range(initial_job_idx, initial_job_idx + len(job_overrides)))

    def launch_numbered(self, job_overrides: Sequence[Sequence[str]], numbers: Sequence[int]) -> Sequence[JobReturn]:
        numbers, overrides = list(numbers), [list(o) for o in job_overrides]
        size = self.max_population or len(numbers)
        chunks = [range(k, min(k + size, len(numbers))) for k in range(0, len(numbers), size)]
        start(self.config, f"{len(chunks)} SLURM job{'s' * (len(chunks) > 1)} of at most {size}", overrides, numbers)
        chunk = Chunk(self.hydra_context, self.config, self.task_function, self.max_population, self.processes,
                      Singleton.get_state(), self.pbt)
        own = [[overrides[k] for k in c] for c in chunks]
        groups = [[numbers[k] for k in c] for c in chunks]
        return run(self.queue, chunk, (own, groups), own, groups, self.config, self.hydra_context)
