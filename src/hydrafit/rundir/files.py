"""How every file of a run or sweep is written, and how metrics.json is read back.

A reader (a person, the sweep summary, a resumed sweep) must never see half a file, and a write
that fails (a full disk) must not leave a temp file that looks like a result: every file goes
through a temp file in the same directory, named per process (joblib workers and the vectorised
launcher's writers write side by side), then an atomic rename.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path

from hydrafit.rundir.owner import alive, this_host

FINISHED = ("completed", "pruned")  # ends that are results: a pruned trial was stopped on purpose
# metrics.json's keys that are not final metrics: how the run ended, and who runs it (owner.py)
NOT_METRICS = ("status", "error", "host", "pid", "pid_started", "started")
RUNNING = "running"  # also "running (host X)": see true_status


# Errors of the disk rather than of the program: a write that meets one is WriteError's one line.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)


class WriteError(OSError):
    """A file of a run or sweep that could not be written (a full disk, a read-only or vanished
    directory). Its text is the one line a command prints: the path, why, and the space left on
    the filesystem when it failed (shutil.disk_usage), with what to do where the disk is full."""

    def __init__(self, path: Path | str, reason: str, code: int | None = None, free: int | None = None):
        super().__init__(code, reason, str(path))
        self.path, self.reason = Path(path), reason
        self.free = free_bytes(self.path) if free is None else free

    def __str__(self) -> str:
        free = f" ({size_text(self.free)} free on its filesystem)" if self.free is not None else ""
        hint = "; free some space, then run again" if self.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return f"cannot write {self.path}: {self.reason}{free}{hint}"

    def __reduce__(self):  # pickled back from the vectorised launcher's writer processes as it is
        return WriteError, (self.path, self.reason, self.errno, self.free)


def as_write_error(error: BaseException, where: Path) -> WriteError | None:
    """`error` as a WriteError if it is one of the disk's (DISK_ERRNOS), met by a writer that does
    not go through write_atomic (TensorBoard's event file, a CSV or MLflow logger's files): named
    by the path the error gives, else by `where`, the directory it wrote in. None for any other
    error."""
    if isinstance(error, WriteError):
        return error
    if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
        # a copy's or a rename's error names the target second (shutil.copyfile, os.replace)
        return WriteError(error.filename2 or error.filename or where, error.strerror or str(error), error.errno)
    return None


def free_bytes(path: Path) -> int | None:
    """Bytes free on the filesystem of `path` (or of its nearest existing parent); None if unknown."""
    for folder in (path, *path.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(folder).free
    return None


def size_text(size: float) -> str:
    """1234567 -> '1.2 MB' (powers of 1000, as df -H)."""
    if size < 1000:
        return f"{size:.0f} B"
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.1f} TB"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` through a temp file and a rename; on failure nothing is left, the
    file `path` held before is as it was, and an OSError is raised as a WriteError naming `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):  # a vanished directory: nothing to remove, keep `error`
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise WriteError(path, error.strerror or str(error), error.errno) from error
        raise


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def write_failure(path: Path, error: BaseException) -> None:
    """metrics.json at `path` of a run that `error` stopped: `status: failed` and the error, so a
    sweep summary (and a person) can tell it from a result. Where even that cannot be written (a
    full disk), the file is removed rather than left saying `running`, then written again into
    the room it freed; a missing metrics.json reads as incomplete (read_metrics), never as a
    result. Raises nothing: the caller reports the error that stopped the run."""
    path = Path(path)
    error = as_write_error(error, path.parent) or error  # TensorBoard's OSError, named by the run dir
    data = {"status": "failed", "error": f"{type(error).__name__}: {error}".strip()}
    try:
        write_json(path, data)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
            write_json(path, data)


def read_metrics(path: Path) -> tuple[str, dict[str, float], str]:
    """(status, final metrics, error) of a job's metrics.json; 'incomplete' if it has none yet."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return "incomplete", {}, ""
    except (OSError, ValueError) as error:
        return "incomplete", {}, f"metrics.json unreadable ({type(error).__name__})"
    if not isinstance(data, dict):
        return "incomplete", {}, "metrics.json is not a JSON object"
    metrics = {k: v for k, v in data.items()
               if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    status, why = true_status(data)
    return status, metrics, str(data.get("error", "")) or why


def true_status(data: dict) -> tuple[str, str]:
    """(status, why) of a run from its metrics.json `data`: as recorded, except for a `running`
    run, which is `died` if its process is gone (kill -9, the OOM killer, a reboot) and
    `running (host X)` if another host runs it (its process cannot be asked from here). A
    `running` record without its owner (hydrafit.rundir.owner) stays `running`: nothing tells."""
    status = str(data.get("status", "incomplete"))
    host, pid = data.get("host"), data.get("pid")
    if status != RUNNING or host is None or pid is None:
        return status, ""
    if host != this_host():
        return f"{RUNNING} (host {host})", ""
    if alive(pid, data.get("pid_started")):
        return RUNNING, ""
    return "died", (f"its process (pid {pid} on {host}, started {data.get('started', '?')}) ended without "
                    f"recording how: killed (kill -9, the OOM killer) or its machine restarted")


def still_running(status: str) -> bool:
    """Whether a true_status says the run goes on (here, or on another host)."""
    return status == RUNNING or status.startswith(f"{RUNNING} (")


def running_process(path: Path) -> str | None:
    """The process known to run the run whose metrics.json is `path`, as 'pid N on this host' or
    'pid N on host X'; None if none is: the run ended or died, or its `running` record does not
    say who runs it (what resume= and resume_sweep= must not take over)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("pid") is None or not still_running(true_status(data)[0]):
        return None
    where = "this host" if data.get("host") == this_host() else f"host {data.get('host')}"
    return f"pid {data['pid']} on {where}"


def final_metric_names(has_val: bool, has_baseline: bool, has_truth: bool) -> list[str]:
    """The final metrics a run reports (hydrafit.metrics.final_metrics), known before training."""
    names = ["train/mse"] + ["truth/rmse"] * has_truth + ["val/mse"] * has_val
    return names + ["baseline/truth_rmse"] * (has_baseline and has_truth)
