"""Real services for the cluster tests, each under a directory of its own: munge, MariaDB,
slurmdbd, slurmctld and slurmd (a one-node SLURM cluster on this machine, with accounting), and
PostgreSQL. Each daemon gets its own ports, sockets, pid and log files, and is stopped by the PID
recorded when it started (daemons.json), never by name: a system munge or postgres may be running.

    python -m tests.cluster.services up <dir>     # prints `export ...` lines for a shell's eval
    python -m tests.cluster.services down <dir>

The facts behind each setting (which keys SLURM needs here, why munge runs as its own user, ...)
are in the comments beside them. Needs root and the Debian packages `make test-cluster` installs.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SLURM_BINARIES = ["munged", "munge", "unmunge", "mariadb-install-db", "mariadbd", "mariadb",
                  "slurmdbd", "slurmctld", "slurmd", "sinfo", "scontrol", "sacctmgr", "sbatch", "sacct"]
SLURM_USERS = ["munge", "mysql"]
POSTGRES_BINARIES = ["initdb", "postgres", "pg_isready", "createdb"]
PATH_EXTRA = ["/usr/sbin", "/sbin"]  # daemons live in sbin, which a non-login PATH may lack


class ServiceError(RuntimeError):
    """A service did not start; the message ends with the tail of its log."""


def which(name: str) -> str | None:
    if name in POSTGRES_BINARIES:  # Debian keeps the server's binaries out of PATH
        found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
        if found:
            return found[-1]
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *PATH_EXTRA]))


def missing(binaries: list[str], users: list[str]) -> str | None:
    """Why these services cannot start here (one line), or None."""
    if os.geteuid() != 0:
        return "needs root (the daemons switch to their own users)"
    absent = [b for b in binaries if which(b) is None]
    if absent:
        return f"missing binaries: {', '.join(absent)} (make test-cluster installs them)"
    absent = [u for u in users if not _user_exists(u)]
    if absent:
        return f"missing users: {', '.join(absent)} (their Debian packages create them)"
    return None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports: all bound at once, so that the kernel cannot hand one out twice."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(*paths: Path, chars: int = 3000) -> str:
    out = []
    for path in paths:
        if path.is_file():
            out.append(f"--- {path}\n{path.read_text(errors='replace')[-chars:]}")
    return "\n".join(out) or "(no log written)"


def chown(path: Path, user: str, mode: int) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, mode)


def as_user(user: str) -> list[str]:
    """A command prefix that runs as `user`: setpriv execs the command itself, so the PID that
    Popen returns is the daemon's (runuser and su leave a wrapper process in between)."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]


def check_reachable(root: Path) -> None:
    """The daemons that drop root (munge, mysql, postgres) must reach their folders under `root`."""
    for parent in [root, *root.parents]:
        if not parent.stat().st_mode & 0o001:
            raise ServiceError(f"{parent} is not searchable by other users (mode "
                               f"{oct(parent.stat().st_mode & 0o777)}); the munge, mysql and postgres users "
                               f"need to reach {root}: choose a directory under /tmp")


class Daemons:
    """Daemons started under `root`, recorded in root/daemons.json as they start, so that a failed
    start or another process (`down`) stops what is running."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        check_reachable(self.root)
        self.startup_seconds: dict[str, float] = {}
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env: dict[str, str] = {}  # what a client of these services needs in its environment
        self._path = {"PATH": os.pathsep.join([os.environ.get("PATH", ""), *PATH_EXTRA])}

    def spawn(self, name: str, command: list[str], out: Path) -> subprocess.Popen:
        """Start a daemon in the foreground of its own session (a Ctrl-C in the shell that ran
        `up` does not reach it); its stdout and stderr go to `out`."""
        with open(out, "ab") as log:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **self._path, **self.env}, start_new_session=True)
        self.procs.append((name, proc))
        self._record()
        return proc

    def _record(self) -> None:
        # the program that /proc shows for the PID: after setpriv's exec, the command it ran
        program = {n: p.args[len(as_user("")) if p.args[0] == "setpriv" else 0] for n, p in self.procs}
        state = [{"name": n, "pid": p.pid, "exe": Path(program[n]).name} for n, p in self.procs]
        (self.root / "daemons.json").write_text(json.dumps(state, indent=1))

    def run(self, command: list[str], logs: list[Path], timeout: float = 60, **kwargs) -> str:
        """A setup step; on failure a ServiceError with its output and the logs' tails."""
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self._path, **self.env}, **kwargs)
        if proc.returncode != 0:
            raise ServiceError(f"{' '.join(command)} exited {proc.returncode}\n{proc.stdout[-2000:]}"
                               f"{proc.stderr[-2000:]}\n{tail(*logs)}")
        return proc.stdout

    def wait_ready(self, name: str, ready, started: float, logs: list[Path], timeout: float = 60) -> None:
        """Poll `ready()` until it is true; record the seconds since `started`. Fails with the
        logs' tails when the daemon exits or `timeout` passes."""
        proc = dict(self.procs).get(name)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    break
            except (subprocess.TimeoutExpired, OSError):
                pass
            if proc is not None and proc.poll() is not None:
                raise ServiceError(f"{name} exited {proc.returncode} before it was ready\n{tail(*logs)}")
            if time.monotonic() > deadline:
                raise ServiceError(f"{name} not ready after {timeout:.0f} s\n{tail(*logs)}")
            time.sleep(0.1)
        self.startup_seconds[name] = round(time.monotonic() - started, 2)

    def ok(self, command: list[str], expect: str | None = None) -> bool:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=10,
                              env={**os.environ, **self._path, **self.env})
        return proc.returncode == 0 and (expect is None or proc.stdout.strip() == expect)

    def running(self, name: str) -> bool:
        return any(n == name and p.poll() is None for n, p in self.procs)

    def stop(self) -> None:
        stop_recorded(self.root, {p.pid: p for _, p in self.procs})
        self.procs = []


# Stop order: the SLURM daemons before the database slurmdbd writes to, munge last (they use it).
# TERM everywhere but postgres, whose TERM waits for its clients to disconnect; INT does not.
STOP_SIGNAL = {"postgres": signal.SIGINT}
STOP_ORDER = [["slurmd", "slurmctld"], ["slurmdbd"], ["mariadb", "postgres"], ["munge"]]


def stop_recorded(root: Path, children: dict[int, subprocess.Popen] | None = None,
                  timeout: float = 20) -> list[str]:
    """Stop the daemons recorded in root/daemons.json by their PIDs (KILL after `timeout`), the
    ones that depend on others first. A PID is signalled only while /proc shows it still runs the
    recorded program: a PID reused by another process is left alone. Returns the names stopped."""
    state_file = Path(root) / "daemons.json"
    if not state_file.is_file():
        return []
    recorded = json.loads(state_file.read_text())
    children = children or {}
    stopped = []
    for group in STOP_ORDER:
        entries = [e for e in recorded if e["name"] in group and _runs(e)]
        for entry in entries:
            _signal(entry["pid"], STOP_SIGNAL.get(entry["name"], signal.SIGTERM))
        for entry in entries:
            if not _wait_gone(entry, children.get(entry["pid"]), timeout):
                _signal(entry["pid"], signal.SIGKILL)
                _wait_gone(entry, children.get(entry["pid"]), 5)
            stopped.append(entry["name"])
    for proc in children.values():  # reap the ones that had already died
        proc.poll()
    state_file.unlink()
    return stopped


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:  # it ended on its own meanwhile
        pass


def _runs(entry: dict) -> bool:
    try:
        cmdline = Path(f"/proc/{entry['pid']}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{entry['pid']}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[1].split()[0] == "Z"
    return not zombie and Path(cmdline[0].decode()).name == entry["exe"]


def _wait_gone(entry: dict, child: subprocess.Popen | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None:
            if child.poll() is not None:
                return True
        elif not _runs(entry):
            return True
        time.sleep(0.05)
    return False


class Slurm(Daemons):
    """munge, MariaDB, slurmdbd, slurmctld and slurmd for one node: this machine. After start():
    `conf` (slurm.conf), `env` ({"SLURM_CONF": ...} for clients), `partition`, `startup_seconds`."""

    partition = "debug"
    cluster = "hydrafit"

    def start(self) -> Slurm:
        try:
            mariadb_port, dbd_port, ctld_port, slurmd_port = free_ports(4)
            self.munge_socket = self._start_munge()
            self._start_mariadb(mariadb_port)
            self.conf = self._write_conf(mariadb_port, dbd_port, ctld_port, slurmd_port)
            self.env["SLURM_CONF"] = str(self.conf)
            self._start_slurm()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self) -> Path:
        started = time.monotonic()
        home = self.root / "munge"
        home.mkdir()
        chown(home, "munge", 0o755)  # munged refuses a socket folder others can write to or not enter
        key = home / "munge.key"
        key.write_bytes(os.urandom(1024))
        chown(key, "munge", 0o400)
        sock = home / "munge.socket"
        log = home / "munged.log"
        # munged refuses to run as root; -F keeps it in the foreground, so its PID is the daemon's
        self.spawn("munge", [*as_user("munge"), which("munged"), "-F", f"--key-file={key}", f"--socket={sock}",
                             f"--pid-file={home / 'munged.pid'}", f"--log-file={log}",
                             f"--seed-file={home / 'munged.seed'}"], home / "munged.out")
        self.wait_ready("munge", lambda: subprocess.run(
            f"{which('munge')} -S {sock} -n | {which('unmunge')} -S {sock}", shell=True,
            capture_output=True, timeout=10).returncode == 0, started, [log, home / "munged.out"])
        return sock

    def _start_mariadb(self, port: int) -> None:
        started = time.monotonic()
        home = self.root / "mariadb"
        home.mkdir()
        chown(home, "mysql", 0o755)
        data, self.mariadb_socket, log = home / "data", home / "mariadbd.sock", home / "mariadbd.log"
        # --no-defaults: none of the system's /etc/mysql settings (its port, socket and datadir)
        self.run([which("mariadb-install-db"), "--no-defaults", "--user=mysql", f"--datadir={data}",
                  "--skip-test-db", "--auth-root-authentication-method=socket"], [log], timeout=120)
        self.spawn("mariadb", [which("mariadbd"), "--no-defaults", "--user=mysql", f"--datadir={data}",
                               f"--port={port}", "--bind-address=127.0.0.1", f"--socket={self.mariadb_socket}",
                               f"--pid-file={home / 'mariadbd.pid'}", f"--log-error={log}",
                               "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
                               "--innodb-flush-log-at-trx-commit=0"], home / "mariadbd.out")
        client = [which("mariadb"), "--no-defaults", f"--socket={self.mariadb_socket}", "-u", "root"]
        self.wait_ready("mariadb", lambda: self.ok([*client, "-e", "select 1"]), started,
                        [log, home / "mariadbd.out"])
        # slurmdbd connects over TCP to 127.0.0.1 (the name `localhost` would mean the default socket)
        self.db_password = os.urandom(8).hex()
        self.run([*client, "-e", "CREATE DATABASE slurm_acct_db; "
                  f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{self.db_password}'; "
                  "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"], [log])

    def _write_conf(self, mariadb_port: int, dbd_port: int, ctld_port: int, slurmd_port: int) -> Path:
        home = self.root / "slurm"
        for sub in ("state", "spool"):
            (home / sub).mkdir(parents=True)
        host = socket.gethostname()
        cpus = len(os.sched_getaffinity(0))
        total_mb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) // 1024
        memory = total_mb - max(512, total_mb // 10)  # above what slurmd finds, it drains the node
        conf = home / "slurm.conf"
        conf.write_text(f"""\
ClusterName={self.cluster}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={home / 'state'}
SlurmdSpoolDir={home / 'spool'}
SlurmctldPidFile={home / 'slurmctld.pid'}
SlurmdPidFile={home / 'slurmd.pid'}
SlurmctldLogFile={home / 'slurmctld.log'}
SlurmdLogFile={home / 'slurmd.log'}
# no cgroups in this sandbox: track and place tasks without them
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
KillWait=5
MinJobAge=300
# a job asking more than the node has fails at sbatch instead of pending for ever
EnforcePartLimits=ALL
# accounting: sacct, and job states that submitit can read (a job cancelled while pending)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={dbd_port}
# the munge socket for the slurmdbd connection (AuthInfo does not apply to it)
AccountingStoragePass={self.munge_socket}
JobCompType=jobcomp/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        dbd = home / "slurmdbd.conf"
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost=localhost
DbdPort={dbd_port}
SlurmUser=root
PidFile={home / 'slurmdbd.pid'}
LogFile={home / 'slurmdbd.log'}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={mariadb_port}
StorageUser=slurm
StoragePass={self.db_password}
StorageLoc=slurm_acct_db
""")
        os.chmod(dbd, 0o600)  # slurmdbd refuses a config others can read (it holds a password)
        return conf

    def _start_slurm(self) -> None:
        home = self.root / "slurm"
        dbd_log, ctld_log, slurmd_log = home / "slurmdbd.log", home / "slurmctld.log", home / "slurmd.log"
        dbd_port = int(self.conf.read_text().split("AccountingStoragePort=")[1].split()[0])

        started = time.monotonic()
        self.spawn("slurmdbd", [which("slurmdbd"), "-D"], home / "slurmdbd.out")
        self.wait_ready("slurmdbd", lambda: _connects(dbd_port), started, [dbd_log, home / "slurmdbd.out"])

        # slurmctld registers the cluster with slurmdbd itself; sacct works once it is listed
        started = time.monotonic()
        self.spawn("slurmctld", [which("slurmctld"), "-D", "-i"], home / "slurmctld.out")
        self.wait_ready("slurmctld", lambda: self.ok([which("scontrol"), "ping"]) and self.ok(
            [which("sacctmgr"), "-n", "-P", "show", "cluster", "format=Cluster"], self.cluster),
            started, [ctld_log, home / "slurmctld.out", dbd_log])

        started = time.monotonic()
        self.spawn("slurmd", [which("slurmd"), "-D"], home / "slurmd.out")
        self.wait_ready("slurmd", lambda: self.ok([which("sinfo"), "-h", "-o", "%T"], "idle"), started,
                        [slurmd_log, home / "slurmd.out", ctld_log])

    def stop(self) -> None:
        """Cancel this cluster's jobs (so no job outlives its slurmd), then stop the daemons."""
        if "SLURM_CONF" in self.env and self.running("slurmctld"):
            try:
                subprocess.run([which("scancel"), "--full", "-u", "root"], capture_output=True, timeout=10,
                               env={**os.environ, **self.env})
            except subprocess.TimeoutExpired:
                pass  # a controller that does not answer cancels nothing: stop the daemons anyway
        super().stop()

    def sacct_jobs(self, since: str = "now-1hour") -> list[dict]:
        """The cluster's jobs since `since` (sacct's time syntax), one dict each: JobID, JobName, State."""
        out = subprocess.run([which("sacct"), "-X", "-n", "-P", "-S", since, "-o", "JobID,JobName,State"],
                             capture_output=True, text=True, check=True, timeout=30,
                             env={**os.environ, **self.env}).stdout
        return [dict(zip(("JobID", "JobName", "State"), line.split("|"))) for line in out.splitlines() if line]


def _connects(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Postgres(Daemons):
    """A PostgreSQL server on 127.0.0.1:<free port> with one database; `url` reaches it."""

    database = "hydrafit"

    def start(self) -> Postgres:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        started = time.monotonic()
        (port,) = free_ports(1)
        home = self.root / "postgres"
        home.mkdir()
        chown(home, "postgres", 0o755)
        data, log = home / "data", home / "postgres.log"
        # initdb and postgres refuse root; --no-sync and fsync=off: a throwaway server
        self.run([*as_user("postgres"), which("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync"], [log], timeout=120, cwd=home)
        self.spawn("postgres", [*as_user("postgres"), which("postgres"), "-D", str(data), "-p", str(port),
                                "-k", str(home), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"], log)
        self.wait_ready("postgres", lambda: self.ok(
            [which("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]), started, [log])
        self.run([which("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", self.database], [log])
        self.url = f"postgresql://postgres@127.0.0.1:{port}/{self.database}"
        (self.root / "postgres.url").write_text(self.url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.services", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("dir", type=Path, help="the services' folder (under /tmp: their users must reach it)")
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    if args.action == "down":
        stopped = [n for sub in ("slurm", "postgres") for n in stop_recorded(root / sub)]
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}", file=sys.stderr)
        return 0
    if any((root / sub / "daemons.json").exists() for sub in ("slurm", "postgres")):
        print(f"{root} has running services: `down {args.dir}` first", file=sys.stderr)
        return 1
    reason = missing(SLURM_BINARIES + POSTGRES_BINARIES, SLURM_USERS + ["postgres"])
    if reason:
        print(f"cannot start: {reason}", file=sys.stderr)
        return 1
    for sub in ("slurm", "postgres"):
        shutil.rmtree(root / sub, ignore_errors=True)  # an earlier up's files, its daemons stopped
    slurm = Slurm(root / "slurm").start()
    try:
        postgres = Postgres(root / "postgres").start()
    except BaseException:
        slurm.stop()
        raise
    seconds = {**slurm.startup_seconds, **postgres.startup_seconds}
    print("started (seconds): " + ", ".join(f"{k} {v}" for k, v in seconds.items()), file=sys.stderr)
    # stdout: only the lines a shell evaluates
    print(f"export SLURM_CONF={slurm.conf}")
    print(f"export HYDRAFIT_TEST_POSTGRES={postgres.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
