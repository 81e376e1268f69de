"""The signal (SIGINT, SIGTERM) that asked this process to stop, process-wide: GracefulStop records
it, and a sweep stops after the job it came in. Imports nothing, so that the sweep summary reads
it without importing Lightning."""
from __future__ import annotations

requested: str | None = None  # the signal's name, once one came
