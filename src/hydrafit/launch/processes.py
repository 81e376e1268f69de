"""Work shared with processes forked from this one, each taking the next item from a counter in
shared memory (share): the vectorised launcher composes, prepares and writes its jobs this way.
Linux only (fork); elsewhere one process does all the work."""
from __future__ import annotations

import functools
import multiprocessing
import os
import pickle
import sys
from typing import Optional


def forked(target) -> multiprocessing.Process:
    """A started process forked from this one that runs `target` (record_members, fork_returning)."""
    for stream in (sys.stdout, sys.stderr):  # or the child would print what this process buffered
        stream.flush()
    process = multiprocessing.get_context("fork").Process(target=target, daemon=True)
    process.start()
    return process


def fork_returning(work):
    """A forked process that runs `work()` and sends back what it returns (returned): (process,
    pipe). The processes of share (compose_all, prepare_all, write_members)."""
    receive, send = multiprocessing.get_context("fork").Pipe(duplex=False)

    def run() -> None:
        if "torch" in sys.modules:  # (compose_all's processes fork before torch is imported)
            import torch

            torch.set_num_threads(1)  # as DataLoader's workers: torch's OpenMP pool does not survive a fork
        try:
            # pickle's own bytes: multiprocessing's pickler would pass tensors as shared memory,
            # gone with this process
            send.send_bytes(pickle.dumps(work()))
        except KeyboardInterrupt:  # Ctrl-C reached the whole process group: the launcher reports it
            os._exit(130)

    process = forked(run)
    send.close()
    return process, receive


def share(items, work, processes: int, meanwhile=None, lost=None) -> list:
    """[work(item) for item in items], computed by this process and processes - 1 forked ones
    (fork_returning), each taking the next item none has taken yet from a counter in shared
    memory, so that a process slowed down takes fewer. `meanwhile` runs here before this process
    takes any (compose_all: the import the others do not wait for). A process that dies leaves
    its items to this one, unless `lost` (called with it) raises."""
    items = list(items)
    if processes <= 1 or len(items) < 2:
        if meanwhile:
            meanwhile()
        return [work(item) for item in items]
    taken = multiprocessing.get_context("fork").Value("q", 0)

    def run(pickled: bool) -> dict:
        done = {}
        while True:
            with taken.get_lock():
                k = taken.value
                taken.value += 1
            if k >= len(items):
                return done
            # a forked process pickles each result as it is done, while this one still works
            # (the pickle of a 480-job composition took ~1 s at the end)
            done[k] = pickle.dumps(work(items[k])) if pickled else work(items[k])

    children = [fork_returning(functools.partial(run, True)) for _ in range(processes - 1)]
    if meanwhile:
        meanwhile()
    done = run(False)
    try:
        for process, pipe in children:
            try:
                done.update({k: pickle.loads(result) for k, result in returned(process, pipe).items()})
            except EOFError:  # it died (its error is on stderr): its items are done here
                if lost:
                    lost(process)
    finally:
        for process, _ in children:
            process.join()
    return [done[k] if k in done else work(items[k]) for k in range(len(items))]


def returned(process: multiprocessing.Process, pipe):
    """What fork_returning's process sent back, once it has ended; EOFError if it died first."""
    try:
        return pickle.loads(pipe.recv_bytes())
    finally:
        process.join()


def process_count(jobs: int, asked: Optional[int] = None, per: int = 16) -> int:
    """Processes that share the work on `jobs` jobs (compose_all, prepare_all, write_members),
    this one included: hydra.launcher.processes, or one a core and at most one per `per` jobs
    (forking a process that has imported torch costs ~0.1 s); one where fork() is not how Python
    starts processes (macOS, Windows)."""
    if sys.platform != "linux":
        return 1
    return max(1, min(jobs, asked or min(len(os.sched_getaffinity(0)), jobs // per)))


def picklable(value):
    """A job's return value as a writer process can send it: an exception that pickle refuses
    becomes a RuntimeError with its text."""
    try:
        pickle.dumps(value)
        return value
    except Exception:
        return RuntimeError(f"{type(value).__name__}: {value}")
