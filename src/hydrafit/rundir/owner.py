"""Who runs a run: the record a started run leaves in its metrics.json (host, pid, start), and
whether that process still lives.

A process killed by the OS (kill -9, the OOM killer, a reboot) cannot write how it ended, so a
reader asks the kernel instead (hydrafit.rundir.files.true_status). A pid is reused once its
process is gone: the record holds the process's start time as the kernel counts it
(/proc/<pid>/stat, clock ticks since boot), and a process with that pid but another start time
is not the run's. Without /proc (macOS) a pid in use counts as the run's, reused or not. Only
the host that runs a process can ask about it: a run on another host is reported as running
there, and two containers that share a disk and a host name see each other's pids as their own.
"""
from __future__ import annotations

import os
import socket
import time


def owner_record(pid: int | None = None) -> dict:
    """What metrics.json records about the process that runs a fit (`pid`, default this one):
    host, pid, the pid's start (for reuse) and when the fit started, in local time."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": pid, "pid_started": process_start(pid),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def this_host() -> str:
    return socket.gethostname()


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of process `pid` from /proc/<pid>/stat, None
    if there is no such file (no such process, or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode(errors="replace")
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
    fields = text[text.rfind(")") + 2:].split()
    try:
        return fields[0], int(fields[19])  # fields 3 and 22 of proc(5)
    except (IndexError, ValueError):
        return None


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot; None without /proc."""
    stat = proc_stat(pid)
    return stat and stat[1]


def alive(pid, pid_started) -> bool:
    """Whether the process `pid` of this host lives and is the one whose start `pid_started`
    (process_start; None: unknown) a run recorded. A zombie (killed, not yet waited for) is gone."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # os.kill(0 or -1, ...) would ask about a process group, not a process
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent, the kernel only says whether pid exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except OSError:
        return False
    stat = proc_stat(pid)
    if stat is None:
        return True  # no /proc: the pid is in use, whoever's it is now
    state, started = stat
    return state != "Z" and (pid_started is None or started == pid_started)
