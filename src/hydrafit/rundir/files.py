"""How every file of a run or sweep is written, and how metrics.json is read back.

A reader (a person, the sweep summary, a resumed sweep) must never see half a file, and a write
that fails (a full disk) must not leave a temp file that looks like a result: every file goes
through a temp file in the same directory, named per process (joblib workers and the vectorised
launcher's writers write side by side), then an atomic rename.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

FINISHED = ("completed", "pruned")  # ends that are results: a pruned trial was stopped on purpose
NOT_METRICS = ("status", "error")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` to `path` through a temp file and a rename; on failure nothing is left."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


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
    return str(data.get("status", "incomplete")), metrics, str(data.get("error", ""))


def final_metric_names(has_val: bool, has_baseline: bool, has_truth: bool) -> list[str]:
    """The final metrics a run reports (hydrafit.metrics.final_metrics), known before training."""
    names = ["train/mse"] + ["truth/rmse"] * has_truth + ["val/mse"] * has_val
    return names + ["baseline/truth_rmse"] * (has_baseline and has_truth)
