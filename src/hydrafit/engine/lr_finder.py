"""lr_find=true: Lightning's learning-rate finder picks the run's lr before it trains.

    hydrafit-train lr_find=true                  # then trains with the suggestion
    hydrafit-train lr_find=true optimizer=sgd    # any optimizer but L-BFGS (config.check_training)
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def find_lr(module, datamodule, trainer_cfg: DictConfig, run_dir: Path) -> float | None:
    """Lightning's LR range test (Tuner.lr_find: 100 optimizer steps, the lr growing
    exponentially from 1e-8 to 1) on `module`, which it leaves as it found it (weights restored
    from a checkpoint it writes to `run_dir` and deletes). Saves the loss-vs-lr plot as
    <run_dir>/lr_find.png and returns the suggestion, the lr where the smoothed loss falls
    fastest, or None when too few steps had a finite loss.

    It runs on a Trainer of its own, without the run's callbacks and loggers (the run's
    Trainer then starts from scratch, with its own data loader), and the module takes one
    optimizer step per batch meanwhile: Lightning's finder steps its lr schedule and reads the
    loss only under automatic optimization (models.Regressor.automatic_optimization)."""
    import pytorch_lightning as pl
    from pytorch_lightning.tuner import Tuner

    finder_trainer = pl.Trainer(
        accelerator=trainer_cfg.accelerator, devices=1, precision=trainer_cfg.precision,
        deterministic=trainer_cfg.get("deterministic", False), default_root_dir=str(run_dir),
        max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0)
    module.one_step_per_batch = True
    try:
        finder = Tuner(finder_trainer).lr_find(module, datamodule=datamodule, update_attr=False)
    finally:
        module.one_step_per_batch = False
    suggestion = finder.suggestion()
    save_plot(finder, run_dir / "lr_find.png")
    if suggestion is None:
        log.warning("lr_find: no suggestion (the loss was not finite for enough steps); training "
                    "with the configured optimizer.lr; see %s", run_dir / "lr_find.png")
        return None
    log.info("lr_find    suggests lr=%g: where the loss fell fastest over %d steps of lr from "
             "%g to %g (plot: %s)", suggestion, len(finder.results["lr"]), finder.lr_min,
             finder.lr_max, run_dir / "lr_find.png")
    return suggestion


def save_plot(finder, path: Path) -> None:
    """Lightning's loss-vs-lr figure with the suggestion marked, written whole (temp file + rename)."""
    import matplotlib.pyplot as plt

    fig = finder.plot(suggest=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)  # pyplot keeps its figures: a notebook would show it again
    os.replace(tmp, path)
