"""Fixtures for the tests against real services (tests/cluster/services.py): a one-node SLURM
cluster with accounting (`slurm_cluster`) and a PostgreSQL server (`postgres_url`), each started
once per session in a folder of its own and stopped at the session's end, failed tests or not.
Where they cannot start (not root, packages missing) their tests skip, saying what is missing.

Every test here carries the `cluster` marker: `make test` leaves them out (-m "not cluster"),
`make test-cluster` installs the packages and runs them.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from cluster import services

HERE = Path(__file__).parent
STARTUP_SECONDS: dict[str, float] = {}  # every service this session started: the report prints them


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.cluster)


def pytest_terminal_summary(terminalreporter):
    if STARTUP_SECONDS:
        terminalreporter.write_sep("-", "cluster services: seconds to start")
        terminalreporter.write_line(", ".join(f"{name} {s:.2f}" for name, s in STARTUP_SECONDS.items()))


def service_root(name: str) -> Path:
    """A short folder under /tmp: the daemons' users (munge, mysql, postgres) cannot enter
    pytest's own temp folders (mode 700, root's), and unix socket paths are limited to 107 bytes."""
    return Path(tempfile.mkdtemp(prefix=f"hydrafit-{name}-"))


def running(kind, binaries, users: list[str], what: str):
    """A started `kind` (services.Slurm or Postgres) in a folder of its own, stopped and removed
    at the end; a skip saying what is missing where it cannot start."""
    reason = services.missing(binaries, users)
    if reason:
        pytest.skip(f"no {what}: {reason}")
    root = service_root(kind.__name__.lower())
    service = kind(root)
    try:
        service.start()
        STARTUP_SECONDS.update(service.startup_seconds)
        yield service
    finally:
        service.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node cluster: `.env` (merge into a client's environment: SLURM_CONF),
    `.partition`, `.conf`, `.startup_seconds`, `.sacct_jobs(since)`."""
    yield from running(services.Slurm, services.SLURM_BINARIES, services.SLURM_USERS, "SLURM cluster")


@pytest.fixture(scope="session")
def postgres_url():
    """postgresql://postgres@127.0.0.1:<port>/hydrafit of a running server."""
    for server in running(services.Postgres, services.POSTGRES_BINARIES, ["postgres"], "PostgreSQL server"):
        yield server.url
