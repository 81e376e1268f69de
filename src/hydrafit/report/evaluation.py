"""hydrafit-eval: a finished run's model, reloaded from its checkpoint, scored and asked.

    hydrafit-eval run=outputs/runs/2026-11-24_08-48-10                 # metrics + fit.png again
    hydrafit-eval run=outputs/multiruns/2026-11-24_09-00-00/3 ckpt=best  # one job of a sweep
    hydrafit-eval run=outputs/runs/2026-11-24_08-48-10 input=new_x.csv output=predictions.csv

It reads the run's own record (.hydra/config.yaml, and the launch directory from
.hydra/hydra.yaml, against which a relative dataset.path is resolved), rebuilds the dataset
from it, loads checkpoints/<ckpt>.ckpt and recomputes the metrics: for ckpt=last they equal
the run's metrics.json. Everything goes to <run>/eval/<ckpt>/ (metrics.json, fit.png,
predictions.csv, evaluate.log, .hydra/); the run's own files are never touched. Paths given on
the command line are relative to the directory hydrafit-eval is started in.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from hydrafit.config.errors import ConfigError
from hydrafit.config.preflight import check_request
from hydrafit.data import load_dataset
from hydrafit.data.csvfile import read_columns
from hydrafit.metrics import final_metrics, predict
from hydrafit.models import load_regressor
from hydrafit.plotting import png
from hydrafit.report.figure import draw_fit, write_fit_png
from hydrafit.rundir.files import write_atomic, write_json
from hydrafit.rundir.records import recorded_config

log = logging.getLogger(__name__)


def compare(metrics: dict, run_dir: Path, ckpt: str) -> None:
    """Log each recomputed metric next to the run's own value; warn where the last checkpoint
    does not reproduce it (the data file changed since, or another machine)."""
    file = run_dir / "metrics.json"
    recorded = json.loads(file.read_text()) if file.is_file() else {}
    for name, value in metrics.items():
        before = recorded.get(name)
        log.info("%-20s %.6g   (run's metrics.json: %s)", name, value,
                 "-" if before is None else f"{before:.6g}")
        if ckpt == "last" and isinstance(before, float) and before != value:
            log.warning("%s differs from the run's own value: did the data change since?", name)


def _number_text(value: float) -> str:
    """400.0 -> '400', 0.1 -> '0.1': the shortest text that reads back as the same float."""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def read_inputs(cfg: DictConfig, run_cfg: DictConfig):
    """(column, x values) of the CSV `cfg.input`: its column `cfg.x`, by default the run's
    dataset.x ("x" for function datasets). Read before anything is computed or written."""
    column = cfg.x if cfg.x is not None else run_cfg.dataset.get("x", "x")
    try:
        x = read_columns(Path(to_absolute_path(str(cfg.input))), {"x": column}, "input")[:, 0]
    except ConfigError as error:
        if not str(error).startswith("x: "):
            raise
        raise ConfigError(f"input: {str(error)[3:]}; the run's x column is '{column}': name the "
                          f"input's with x=<header name or index>") from None
    return column, x


def write_predictions(output: Path, column, x, net) -> None:
    """<x column>,prediction rows of `net` at x, in the data's units; the float32 predictions
    are printed with 9 digits, enough to read back the very same numbers."""
    prediction = predict(net, torch.from_numpy(x).float().unsqueeze(1)).ravel().tolist()
    output.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow([column if isinstance(column, str) else "x", "prediction"])
    writer.writerows([_number_text(float(a)), f"{b:.9g}"] for a, b in zip(x, prediction))
    write_atomic(output, text.getvalue())
    log.info("Wrote %d predictions to %s", len(x), output)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Recompute the run's metrics and fit.png from its checkpoint; predict `input` if given."""
    ckpt = check_request(cfg)
    run_dir, out = ckpt.parent.parent, Path(HydraConfig.get().runtime.output_dir)
    run_cfg = recorded_config(run_dir)
    inputs = read_inputs(cfg, run_cfg) if cfg.input is not None else None
    log.info("Run        %s (%s)", run_dir, run_cfg.dataset._target_)
    datamodule = load_dataset(run_cfg.dataset, run_cfg.seed)
    module, epochs = load_regressor(ckpt)
    log.info("Checkpoint %s, after %d epochs", ckpt.name, epochs)
    metrics = final_metrics(module.net, datamodule)
    compare(metrics, run_dir, cfg.ckpt)
    write_json(out / "metrics.json", {**metrics, "checkpoint": str(ckpt), "epochs": epochs})
    write_fit_png(out, png(draw_fit(module.net, datamodule, epochs)))  # as the run drew its own
    log.info("Wrote %s and fit.png", out / "metrics.json")
    if inputs is not None:
        write_predictions(Path(to_absolute_path(str(cfg.output))), *inputs, module.net)
    return metrics
