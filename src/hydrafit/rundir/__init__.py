"""The on-disk contract of a run directory: its name, metrics.json and its statuses, the .hydra/
record, and the one way files are written (files.write_atomic)."""
