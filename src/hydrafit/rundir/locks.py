"""A lock around the creation of an SQLite store (an Optuna study, an MLflow tracking store)."""
from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path


@contextlib.contextmanager
def sqlite_lock(url: str):
    """Serialise the creation of an SQLite store (an Optuna study, an MLflow tracking store):
    workers creating one database file at the same moment race in its table creation. A database
    server's workers may be on other machines: sweeps.study.created retries theirs instead."""
    if not url.startswith("sqlite:///"):
        yield
        return
    path = Path(url[len("sqlite:///"):])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
