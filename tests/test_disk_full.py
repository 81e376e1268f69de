"""A disk that fills up, and the failures a sweep expects, as a user meets them: one line on
stderr naming the path, the error and the space left, a non-zero exit, no temp file left, no
metrics.json that says `running` for a run that ended, and tracebacks only in the job's log.

The small disk is a tmpfs mounted in the test's directory (`mount -t tmpfs -o size=...`, which
needs root or CAP_SYS_ADMIN). Where mounting is refused, the commands run with ENOSPC injected
instead: a sitecustomize on PYTHONPATH makes every write to a file under the directory fail once
the files there fill the disk's size in 4 kB blocks (SmallDisk.how says which was used).

Run: .venv/bin/python -m pytest tests/test_disk_full.py -q -n 0   (11 to 20 s on 2 shared cores)
"""
from __future__ import annotations

import contextlib
import errno
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import run_cli

SHORT = ["trainer.max_epochs=20"]
NO_SPACE = "No space left on device"
FREE_SPACE = r" \(\d[\d.]* [kMGT]?B free on its filesystem\); free some space, then run again$"  # df's figure, on a tmpfs 0 B

# Written as sitecustomize.py where no tmpfs can be mounted: files opened for writing under
# $HYDRAFIT_FULL_DIR get no more 4 kB blocks once the files there hold $HYDRAFIT_FULL_BYTES.
INJECTION = '''
import builtins, errno, io, os

_DIR, _BYTES = os.environ["HYDRAFIT_FULL_DIR"], int(os.environ["HYDRAFIT_FULL_BYTES"])
_open = io.open


def _blocks(size):
    return -(-size // 4096) * 4096


def _used():
    paths = [os.path.join(d, f) for d, _, fs in os.walk(_DIR) for f in fs]
    return sum(_blocks(os.path.getsize(p)) for p in paths if os.path.exists(p))


class _Full:
    def __init__(self, file):
        self._file = file

    def write(self, data):
        end = self._file.tell()
        if _used() + _blocks(end + len(data)) - _blocks(end) > _BYTES:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __iter__(self):
        return iter(self._file)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)


def _full_open(file, mode="r", *args, **kwargs):
    opened = _open(file, mode, *args, **kwargs)
    writes = any(m in mode for m in "wax+")
    under = isinstance(file, (str, os.PathLike)) and os.path.abspath(os.fspath(file)).startswith(_DIR)
    return _Full(opened) if writes and under else opened


builtins.open = io.open = _full_open
'''


@dataclass
class SmallDisk:
    """A directory on a disk of `size` bytes: a tmpfs, or ENOSPC injected (`how`); `env` goes to
    every command run on it."""

    path: Path
    size: int
    how: str
    env: dict = field(default_factory=dict)

    def fill(self) -> None:
        """Take what room is left, so that the next write fails."""
        if self.how != "tmpfs":
            self.env["HYDRAFIT_FULL_BYTES"] = "0"
            return
        try:
            with open(self.path / "filler", "wb") as filler:  # (creating a file may need room too)
                while True:
                    filler.write(b"\0" * 4096)
                    filler.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC, error

    def leftovers(self) -> list[Path]:
        """Temp files of an atomic write (rundir.files.write_atomic) left on the disk."""
        return sorted(self.path.rglob("*.tmp"))


@contextlib.contextmanager
def disk_of(size: int, tmp: Path):
    """A SmallDisk of `size` bytes at tmp/disk, unmounted on leaving."""
    where = tmp / "disk"
    where.mkdir()
    if sys.platform != "linux":
        pytest.skip("needs Linux: a tmpfs, or ENOSPC injected into the commands' Python")
    mounted = shutil.which("mount") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size // 1000}k", "tmpfs", str(where)],
        capture_output=True).returncode == 0
    if mounted:
        try:
            yield SmallDisk(where, size, "tmpfs")
        finally:
            subprocess.run(["umount", "-l", str(where)], check=True)
        return
    (tmp / "injection").mkdir()
    (tmp / "injection" / "sitecustomize.py").write_text(INJECTION)
    yield SmallDisk(where, size, "injected ENOSPC", {
        "PYTHONPATH": str(tmp / "injection"), "HYDRAFIT_FULL_DIR": str(where), "HYDRAFIT_FULL_BYTES": str(size)})


def message_lines(stderr: str) -> list[str]:
    """stderr's lines, less the progress bar's (a line that follows a bar not ended is lost too)."""
    return [line for line in re.split(r"[\r\n]", stderr) if line.strip() and not line.startswith("Training")]


def no_running_lie(run_dir: Path) -> None:
    """metrics.json of a run that ended: absent (reads as incomplete), a result, or a failure,
    never `running`."""
    path = run_dir / "metrics.json"
    if path.exists():
        status = json.loads(path.read_text())["status"]
        assert status in ("completed", "failed"), (run_dir, status)


@pytest.fixture
def small_disk(tmp_path):
    """A 120 kB disk: room for a run's .hydra/ record, not for the rest of its files."""
    with disk_of(120_000, tmp_path) as disk:
        yield disk


def test_a_run_on_a_full_disk_ends_in_one_line(small_disk, tmp_path):
    run = small_disk.path / "run"
    proc = run_cli(*SHORT, f"hydra.run.dir={run}", cwd=tmp_path, check=False, env=small_disk.env)
    assert proc.returncode == 1, small_disk.how
    lines = message_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith(f"hydrafit-train: error: cannot write {run}") and NO_SPACE in line, line
    assert re.search(FREE_SPACE, line), line
    assert not small_disk.leftovers()
    no_running_lie(run)
    if (run / "metrics.json").exists():  # the room its `running` record held was enough for this
        assert json.loads((run / "metrics.json").read_text())["error"].startswith(f"WriteError: cannot write {run}")


@pytest.fixture(scope="module")
def full_sweep(tmp_path_factory):
    """16 jobs trained as one population on a 600 kB disk: room for a few jobs' files only."""
    tmp = tmp_path_factory.mktemp("full_sweep")
    with disk_of(600_000, tmp) as disk:
        sweep = disk.path / "sweep"
        proc = run_cli("-m", "hydra/launcher=vectorized", "seed=range(1,17)", *SHORT, f"hydra.sweep.dir={sweep}",
                       cwd=tmp, check=False, env=disk.env)
        yield disk, sweep, proc


def test_a_vectorised_sweep_on_a_full_disk_says_each_job_in_one_line(full_sweep):
    disk, sweep, proc = full_sweep
    assert proc.returncode == 1, disk.how
    assert "Traceback" not in proc.stderr and "Error executing job" not in proc.stderr, proc.stderr
    lines = message_lines(proc.stderr)
    errors = [line for line in lines if line.startswith("hydrafit-train: error: ")]
    assert len(errors) == 1 and f"cannot write {sweep}/summary.csv: {NO_SPACE}" in errors[0], lines
    failed = [line for line in lines if line.startswith("  #")]
    assert failed and all(f": failed: WriteError: cannot write {sweep}/" in line and NO_SPACE in line
                          or line.endswith(": incomplete") for line in failed), lines  # (no room for metrics.json)
    assert len(lines) == len(failed) + 3, lines  # "N of 16 jobs did not complete:", the jobs, resume_sweep=, error
    assert not disk.leftovers()
    jobs = sorted(p for p in sweep.iterdir() if p.name.isdigit())
    assert len(jobs) == 16
    for job in jobs:
        no_running_lie(job)
    completed = [j for j in jobs if (j / "metrics.json").exists()
                 and json.loads((j / "metrics.json").read_text())["status"] == "completed"]
    assert len(completed) + len(failed) == 16
    assert all((j / "fit.png").stat().st_size > 0 and (j / "checkpoints" / "last.ckpt").is_file() for j in completed)


def test_the_report_of_a_sweep_on_a_full_disk_prints_its_table_all_the_same(full_sweep, tmp_path):
    disk, sweep, _ = full_sweep
    disk.fill()
    before = {p.name: p.read_bytes() for p in sweep.glob("summary.*")}  # from a rewrite while there was room
    proc = run_cli(str(sweep), script="hydrafit-sweep-report", cwd=tmp_path, check=False, env=disk.env)
    assert proc.returncode == 1, disk.how
    assert proc.stdout.startswith(f"# Sweep {sweep.name}") and "16 jobs: " in proc.stdout, proc.stdout
    assert f"hydrafit-sweep-report: sweep summary of {sweep} (not all saved): 16 jobs" in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in message_lines(proc.stderr) if line.startswith("hydrafit-sweep-report: error: ")]
    assert len(errors) == 1 and re.search(FREE_SPACE, errors[0]), proc.stderr
    assert errors[0].startswith(f"hydrafit-sweep-report: error: cannot write {sweep}/summary.csv: {NO_SPACE} ")
    assert not disk.leftovers()
    assert {p.name: p.read_bytes() for p in sweep.glob("summary.*")} == before  # complete, as they were


def test_a_diverging_job_of_a_sweep_says_so_in_one_line_and_logs_its_traceback(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "optimizer=sgd", "optimizer.lr=100,0.01", *SHORT, f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Error executing job" not in proc.stderr, proc.stderr
    about = [line for line in message_lines(proc.stderr) if "diverged" in line]
    assert len(about) == 1 and about[0].startswith("  #0 optimizer.lr=100: diverged: train/loss became inf at epoch "), \
        proc.stderr
    log = (sweep / "0" / "train.log").read_text()
    assert "Job #0's failure:\nTraceback (most recent call last):" in log
    assert "hydrafit.report.status.RunStopped: train/loss became inf" in log
    assert json.loads((sweep / "0" / "metrics.json").read_text())["status"] == "diverged"
    assert json.loads((sweep / "1" / "metrics.json").read_text())["status"] == "completed"
