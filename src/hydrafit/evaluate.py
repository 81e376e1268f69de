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
import json
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from hydrafit.config import ConfigError

log = logging.getLogger(__name__)
CHECKPOINTS = ("last", "best")


def fail(message: str) -> None:
    print(f"hydrafit-eval: error: {message}", file=sys.stderr)
    sys.exit(2)


def check_request(cfg: DictConfig) -> Path:
    """The checkpoint to load, <run>/checkpoints/<ckpt>.ckpt, after checking that `run` is a
    run directory that has it and that `input`, if given, exists."""
    if OmegaConf.is_missing(cfg, "run") or not cfg.run:
        raise ConfigError("run: required: a run directory, e.g. run=outputs/runs/2026-11-24_08-48-10")
    run_dir = Path(to_absolute_path(str(cfg.run)))
    if not run_dir.is_dir():
        raise ConfigError(f"run: no directory '{cfg.run}' (looked for {run_dir})")
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        raise ConfigError(f"run: '{cfg.run}' is not a hydrafit run directory (no .hydra/config.yaml)")
    if cfg.ckpt not in CHECKPOINTS:
        raise ConfigError(f"ckpt must be one of {', '.join(CHECKPOINTS)}, got {cfg.ckpt!r}")
    path = run_dir / "checkpoints" / f"{cfg.ckpt}.ckpt"
    if not path.is_file():
        raise ConfigError(f"ckpt: the run has no {cfg.ckpt} checkpoint ({path} is missing; "
                          f"runs with callbacks=none or ~callbacks.model_checkpoint save none)")
    if cfg.input is not None and not Path(to_absolute_path(str(cfg.input))).is_file():
        raise ConfigError(f"input: no file '{cfg.input}' (looked for {to_absolute_path(str(cfg.input))})")
    return path


class Preflight(Callback):
    """Checks the request before Hydra creates <run>/eval/<ckpt>/: a mistyped run= must not
    create a directory, it must get one line and exit code 2 (conf/eval.yaml)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        try:
            check_request(config)
        except ConfigError as error:
            fail(str(error))


def run_config(run_dir: Path) -> DictConfig:
    """The run's composed config, with a relative dataset.path made absolute against the
    directory the run was launched from (Hydra records it as hydra.runtime.cwd)."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    path = cfg.dataset.get("path")
    if isinstance(path, str) and not Path(path).is_absolute():
        hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
        launch_dir = OmegaConf.load(hydra_yaml).hydra.runtime.cwd if hydra_yaml.is_file() else os.getcwd()
        cfg.dataset.path = str(Path(launch_dir) / path)
    return cfg


def load_model(path: Path):
    """(Regressor, epochs trained) from a checkpoint, on the CPU, in the dtype it was saved in
    (float64 after trainer.precision=64), so its predictions are those the run computed."""
    import torch

    from hydrafit.models import Regressor

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        module = Regressor(**checkpoint["hyper_parameters"])
        state = checkpoint["state_dict"]
        module.to(next(v.dtype for v in state.values() if v.is_floating_point()))
        module.load_state_dict(state)
    except Exception as error:  # truncated, foreign or from an incompatible version
        reason = str(error).splitlines()[0][:200] if str(error) else ""
        raise ConfigError(f"ckpt: {path} is not a readable hydrafit checkpoint "
                          f"({type(error).__name__}{': ' + reason if reason else ''})") from None
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {})
    return module.eval(), progress.get("total", {}).get("processed", checkpoint["epoch"])


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
    from hydrafit.data import read_columns

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
    import torch

    from hydrafit.metrics import predict

    prediction = predict(net, torch.from_numpy(x).float().unsqueeze(1)).ravel().tolist()
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([column if isinstance(column, str) else "x", "prediction"])
        writer.writerows([_number_text(float(a)), f"{b:.9g}"] for a, b in zip(x, prediction))
    log.info("Wrote %d predictions to %s", len(x), output)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Recompute the run's metrics and fit.png from its checkpoint; predict `input` if given."""
    from hydrafit.train import import_lightning, load_dataset

    import_lightning()  # first: the modules below import them
    from hydrafit.callbacks import draw_fit, write_json_atomic
    from hydrafit.metrics import final_metrics
    from hydrafit.plotting import png

    ckpt = check_request(cfg)
    run_dir, out = ckpt.parent.parent, Path(HydraConfig.get().runtime.output_dir)
    run_cfg = run_config(run_dir)
    inputs = read_inputs(cfg, run_cfg) if cfg.input is not None else None
    log.info("Run        %s (%s)", run_dir, run_cfg.dataset._target_)
    datamodule = load_dataset(run_cfg.dataset, run_cfg.seed)
    module, epochs = load_model(ckpt)
    log.info("Checkpoint %s, after %d epochs", ckpt.name, epochs)
    metrics = final_metrics(module.net, datamodule)
    compare(metrics, run_dir, cfg.ckpt)
    write_json_atomic(out / "metrics.json", {**metrics, "checkpoint": str(ckpt), "epochs": epochs})
    (out / "fit.png").write_bytes(png(draw_fit(module.net, datamodule, epochs)))  # as the run drew its own
    log.info("Wrote %s and fit.png", out / "metrics.json")
    if inputs is not None:
        write_predictions(Path(to_absolute_path(str(cfg.output))), *inputs, module.net)
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://hydrafit.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    try:
        evaluate(cfg)
    except ConfigError as error:
        fail(str(error))


if __name__ == "__main__":
    main()
