"""The on-disk contract of a run directory: its name, metrics.json and its statuses (the true one
of a run whose process died: owner), the .hydra/ record, checkpoints/last.ckpt as a resume reads
it, and the one way files are written (files.write_atomic)."""
