"""The SLURM side of hydra/launcher=slurm and slurm_vectorized (hydrafit.launch.cluster): jobs
submitted through submitit (Queue) and watched until each has ended (Watch), as squeue tells the
jobs still queued or running and sacct the ones that ended. What a job that returned nothing
becomes in the sweep is hydrafit.launch.cluster's.
"""
# No `from __future__ import annotations`: see hydrafit.sweeps.resumable.
import contextlib
import io
import logging
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import OmegaConf

from hydrafit.compat.submitit import shared_parameters
from hydrafit.config.errors import refuse
from hydrafit.sweeps.resumable import consecutive_runs

log = logging.getLogger(__name__)

# A job that left the queue (squeue) having started writes its result file as it ends; on a
# shared filesystem the file can show up a little later (submitit waits 15 s for it too).
RESULT_GRACE_S = 15.0
SACCT_GRACE_S = 3.0   # sacct can lag squeue by a poll or two
POLL_S = (1.0, 10.0)  # squeue every 1 s at first, every 10 s after a few minutes
NOTICE_S = 60.0       # the queue's reasons are logged once nothing of the sweep ran for this long
# What each SLURM end says of a job that returned no result, and what to change about it
HINTS = {"TIMEOUT": "raise hydra.launcher.timeout_min", "OUT_OF_MEMORY": "raise hydra.launcher.mem_gb",
         "NODE_FAIL": "its node failed", "PREEMPTED": "preempted by another job"}


@dataclass
class Ended:
    """A SLURM job that returned no result: `status` its jobs' metrics.json gets (cancelled,
    died or failed) and `why`, one line."""

    status: str
    why: str


class Queue:
    """The submitit executor a hydra.launcher node describes (hydra-submitit-launcher's keys), the
    jobs submitted through it, and the watch over them until each has ended (wait)."""

    def __init__(self, params: Dict[str, Any], pending_timeout_min: Optional[float] = None) -> None:
        self.params = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                       for k, v in params.items()}
        self.pending_timeout_min = pending_timeout_min

    def executor(self):
        """submitit's AutoExecutor for SLURM with these settings, as hydra-submitit-launcher builds
        it: the keys submitit shares between clusters as they are, the others SLURM's (slurm_)."""
        import submitit

        params = dict(self.params)
        executor = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster="slurm",
                                         slurm_max_num_timeout=params.pop("max_num_timeout", 0))
        shared = shared_parameters()  # timeout_min, mem_gb, cpus_per_task, ...
        executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
        return executor

    def submit(self, function, *arguments: Sequence) -> list:
        """submitit's jobs of `function` called on each tuple of `arguments` (one SLURM array).
        A request sbatch refuses (more CPUs or memory than a node has, a GPU on a CPU partition,
        an unknown partition) ends the command with sbatch's reason in one line, exit code 2."""
        from submitit.core.utils import FailedJobError, FailedSubmissionError

        executor = self.executor()
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):  # submitit prints sbatch's error, then raises it
                return executor.map_array(function, *arguments)
        except (FailedJobError, FailedSubmissionError) as error:
            reason = "; ".join(line.replace("sbatch: error: ", "").strip()
                               for line in str(error).splitlines() if line.strip()) or said.getvalue().strip()
            asked = ", ".join(f"{k}={'null' if self.params.get(k) is None else self.params[k]}"
                              for k in ("partition", "cpus_per_task", "mem_gb", "gpus_per_task", "timeout_min"))
            refuse(f"hydra.launcher: sbatch refused the sweep's jobs ({asked}): {reason}; "
                   f"what the partitions offer: sinfo -o '%P %c %m %G %l'")

    def wait(self, jobs: list, numbers: List[List[int]]) -> tuple:
        """(whether Ctrl-C stopped the sweep, what each of `jobs` returned or its Ended);
        `numbers`: the sweep jobs each one runs, for the lines logged. Ctrl-C cancels the jobs
        still queued or running and waits for them to end (a running one stops gracefully and
        returns); a second Ctrl-C does not wait (exit code 130). The caller reports the jobs,
        then stops the sweep (run)."""
        watch = Watch(jobs, names(numbers), self.pending_timeout_min)
        with interruptible():
            try:
                return False, watch.run()
            except KeyboardInterrupt:
                log.error("Ctrl-C: cancelling the sweep's SLURM jobs %s; waiting for them to end (Ctrl-C again: "
                          "do not wait)", " ".join(jobs[i].job_id for i in watch.left()))
                watch.cancel_all()
            try:
                return True, watch.run()
            except KeyboardInterrupt:
                raise SystemExit(130) from None


@contextlib.contextmanager
def interruptible():
    """SIGINT raises KeyboardInterrupt while the sweep waits, even in a process started with
    SIGINT ignored (a background job of a shell script: Python then keeps it ignored), as a fit's
    GracefulStop handles it there too (hydrafit.engine.callbacks)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Watch:
    """The sweep's SLURM jobs as squeue and sacct tell them, read every POLL_S until each has a
    result or an Ended (run)."""

    def __init__(self, jobs: list, names: List[str], pending_timeout_min: Optional[float]) -> None:
        self.jobs, self.names, self.pending_timeout_min = jobs, names, pending_timeout_min
        self.outcomes: Dict[int, Any] = {}
        self.left_queue: Dict[int, float] = {}  # job -> when squeue stopped listing it
        self.started: set = set()               # jobs squeue listed as running
        self.cancelled: Dict[int, str] = {}     # jobs cancelled here -> why
        self.stopped = False                    # Ctrl-C cancelled the jobs
        self.begun = self.progress = time.monotonic()  # progress: when a job of the sweep last ran or ended
        self.noticed = False
        self.unreachable = False  # squeue failed at the last poll

    def left(self) -> List[int]:
        return [i for i in range(len(self.jobs)) if i not in self.outcomes]

    def run(self) -> list:
        while self.left():
            self.poll()
            if self.left():
                time.sleep(min(POLL_S[1], POLL_S[0] + (time.monotonic() - self.begun) / 30))
        return [self.outcomes[i] for i in range(len(self.jobs))]

    def poll(self) -> None:
        queued = squeue([self.jobs[i].job_id for i in self.left()])
        if isinstance(queued, str):  # squeue failed (slurmctld restarting): nothing can be told this round
            if not self.unreachable:
                log.warning("squeue failed (%s); asking again until it answers", queued)
            self.unreachable = True
            return
        self.unreachable = False
        now = time.monotonic()
        for i in self.left():
            job = self.jobs[i]
            if job.paths.result_pickle.exists():
                self.outcomes[i], self.progress = returned(job), now
            elif job.job_id in queued:
                if queued[job.job_id][0] != "PENDING":
                    self.started.add(i)
                    self.progress = now
            else:
                self.left_queue.setdefault(i, now)
        gone = [i for i in self.left() if i in self.left_queue]
        if gone:
            self.jobs[gone[0]].get_info(mode="force")  # one sacct for every job of the sweep
        for i in gone:
            ended = self.ended(i, now)
            if ended is not None:
                self.outcomes[i], self.progress = ended, now
        self.check_pending(queued, now)

    def ended(self, i: int, now: float) -> Optional[Ended]:
        """The Ended of job i, which has left the queue without a result; None while its result
        may still come (it ran: RESULT_GRACE_S) or sacct may still catch up (SACCT_GRACE_S)."""
        job = self.jobs[i]
        state = job.state  # sacct's; UNKNOWN where it keeps no record (a pending array task cancelled)
        node = job.get_info(mode="cache").get("NodeList", "None assigned")
        ran = i in self.started or node not in ("", "None assigned", "(null)")
        if now - self.left_queue[i] < (RESULT_GRACE_S if ran else SACCT_GRACE_S):
            return None
        what, end = f"SLURM job {job.job_id}", state.split()[0].upper()
        if not ran and end in ("PENDING", "UNKNOWN", "CANCELLED", "REQUEUED"):
            # left the queue unstarted: cancelled (sacct may keep a stale PENDING, or nothing)
            return Ended("cancelled", self.cancelled.get(i) or f"{what} was cancelled before it started"
                         + (f" ({state})" if end == "CANCELLED" else ""))
        if end == "CANCELLED":
            return Ended("cancelled", f"{what} was cancelled ({state}) while running, and returned no result")
        hint = HINTS.get(end, f"its log: {job.paths.stderr}")
        return Ended("failed" if end in ("FAILED", "COMPLETED") else "died",
                     f"{what} ended {state} without returning a result ({hint})")

    def check_pending(self, queued: Dict[str, tuple], now: float) -> None:
        """Nothing of the sweep has run for pending_timeout_min: cancel the waiting jobs, each
        with squeue's reason; after NOTICE_S, say once why they wait."""
        waiting = {i: queued[self.jobs[i].job_id][1] for i in self.left()
                   if queued.get(self.jobs[i].job_id, ("",))[0] == "PENDING" and i not in self.cancelled}
        idle = now - self.progress
        if not waiting or self.stopped:
            return
        timeout = self.pending_timeout_min
        if timeout is not None and idle >= timeout * 60:
            for i, reason in waiting.items():
                waited = f"{idle:.0f} s" if idle < 120 else f"{idle / 60:.0f} min"
                why = (f"SLURM job {self.jobs[i].job_id} waited {waited} in the queue ({reason}), none of "
                       f"the sweep's jobs running; cancelled after hydra.launcher.pending_timeout_min={timeout:g}")
                self.cancelled[i] = why
                self.jobs[i].cancel(check=False)
        elif idle >= NOTICE_S and not self.noticed:
            self.noticed = True
            limit = f"cancelled after {timeout:g} min" if timeout is not None else "no limit"
            log.warning("The sweep's SLURM jobs wait in the queue: %s (hydra.launcher.pending_timeout_min: %s)",
                        ", ".join(f"{self.jobs[i].job_id} ({self.names[i]}): {r}" for i, r in waiting.items()), limit)

    def cancel_all(self) -> None:
        self.stopped = True
        for i in self.left():
            self.cancelled.setdefault(i, f"SLURM job {self.jobs[i].job_id} was cancelled (Ctrl-C) before it started")
            self.jobs[i].cancel(check=False)


def squeue(job_ids: List[str]) -> Any:
    """{job id: (state, reason)} of the jobs of `job_ids` that are still queued or running, each
    array task on its own (squeue -r); squeue's error (a str) if it fails."""
    if not job_ids:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T|%r", "-j", ",".join(arrays)],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if out.returncode != 0:
        if "Invalid job id" not in out.stderr:
            return out.stderr.strip() or f"exit code {out.returncode}"
        if len(arrays) == 1:  # slurmctld forgot it (MinJobAge): it has ended
            return {}
        found: Dict[str, tuple] = {}
        for array in arrays:  # one forgotten id fails the whole call: ask one by one
            one = squeue([array])
            if isinstance(one, str):
                return one
            found.update(one)
        return found
    lines = (line.split("|") for line in out.stdout.splitlines() if line.count("|") == 2)
    return {job: (state, reason) for job, state, reason in lines}


def returned(job) -> Any:
    """What `job` returned (its result file exists), or the Ended of a function that raised."""
    error = job.exception()
    if error is None:
        return job.result()
    trace = [line for line in str(error).splitlines() if line.strip() and not line.startswith("-")]
    last = next((line for line in reversed(trace) if not line.startswith((" ", "You can check", "or at paths"))),
                type(error).__name__)
    return Ended("failed", f"SLURM job {job.job_id} raised {last.strip()} (its log: {job.paths.stderr})")


def names(numbers: List[List[int]]) -> List[str]:
    """Each submission's jobs as the log names them: #3, #0-#63."""
    return [" ".join(f"#{r[0]}" + (f"-#{r[-1]}" if len(r) > 1 else "") for r in consecutive_runs(n)) for n in numbers]
