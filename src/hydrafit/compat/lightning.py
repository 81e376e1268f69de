"""Lightning's private names: its checkpoint of a fit as it stands, and ModelCheckpoint's schedule.

- fit_state: Lightning's own checkpoint dict (epoch, global step, the loops' progress, callback
  states) without writing a file. A population member's checkpoint starts from it, so that
  `resume=` continues a member as Lightning continues a single run; Lightning offers no public
  way to get this dict.
- saves_on_batches / due_this_epoch: ModelCheckpoint's schedule, read so that hydrafit's
  Checkpoint skips its per-step and per-epoch hooks when they would not save (~10 us a step and
  ~0.1 ms an epoch, a quarter of the default run's step on a 2-core AMD EPYC).
"""
from __future__ import annotations

CHECKED = "pytorch-lightning 2.2 to 2.6.6"


def fit_state(trainer) -> dict:
    """Lightning's checkpoint of the fit now, minus the module's weights and the optimizers."""
    state = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
    for key in ("state_dict", "optimizer_states", "hyper_parameters", "hparams_name"):
        state.pop(key, None)
    return state


def saves_on_batches(checkpoint) -> bool:
    """Whether a ModelCheckpoint saves every n steps or on a timer (else never after a batch)."""
    return checkpoint._every_n_train_steps >= 1 or checkpoint._train_time_interval is not None


def due_this_epoch(checkpoint, trainer) -> bool:
    """Whether ModelCheckpoint.on_train_epoch_end would save now, by its own conditions."""
    every = checkpoint._every_n_epochs
    due = every >= 1 and (trainer.current_epoch + 1) % every == 0
    return due or checkpoint._last_global_step_saved == trainer.global_step or checkpoint.save_last == "link"


def check() -> None:
    """Raise, naming Lightning, if a name used here is gone (tests/test_compat.py)."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    checkpoint = ModelCheckpoint()
    names = ["_every_n_train_steps", "_train_time_interval", "_every_n_epochs", "_last_global_step_saved"]
    missing = [n for n in names if not hasattr(checkpoint, n)]
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    if not hasattr(getattr(trainer, "_checkpoint_connector", None), "dump_checkpoint"):
        missing.append("Trainer._checkpoint_connector.dump_checkpoint")
    if missing:
        raise RuntimeError(f"pytorch-lightning {pl.__version__} lacks {', '.join(missing)} "
                           f"(hydrafit.compat.lightning was checked with {CHECKED})")
