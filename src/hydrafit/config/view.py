"""The keys of a composed config that hydrafit's code reads by name, read here once into a typed,
frozen view (RunView.of). Everything else in conf/ is an argument of the `_target_` it sits under
(hydrafit.config.validate checks those), or a key other keys interpolate (mlp_shape.*).
tests/test_config_view.py checks that every key in conf/ is one of the three, so that a renamed
key in conf/ fails a test rather than changing what a run or a population does in silence.

    view = RunView.of(cfg)           # cfg: a job config, without `hydra`
    view.callbacks.checkpoint_every  # callbacks.model_checkpoint.every_n_epochs, 0 without it
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

# The keys RunView reads, as dotted paths: the one list of keys read by name outside `_target_`s.
KEYS = (
    "seed", "optimized_metric", "resume", "resume_sweep", "overwrite", "lr_find", "pbt_replay",
    "dataset.batch_size", "dataset.steps_per_batch", "dataset.standardize",
    "optimizer.lr", "scheduler",
    "trainer.max_epochs", "trainer.default_root_dir", "trainer.profiler", "trainer.accelerator", "trainer.precision",
    "trainer.deterministic", "trainer.gradient_clip_val", "trainer.gradient_clip_algorithm",
    "trainer.accumulate_grad_batches", "trainer.check_val_every_n_epoch",
    "trainer.strategy", "trainer.devices",
    "callbacks", "callbacks.metrics_file.dirpath", "callbacks.model_checkpoint.dirpath",
    "callbacks.model_checkpoint.every_n_epochs", "callbacks.model_checkpoint.monitor",
    "callbacks.model_checkpoint.save_top_k", "callbacks.fit_plot.n_images",
    "callbacks.optuna_pruning.every_n_epochs", "callbacks.optuna_pruning.metric", "logger",
)


@dataclass(frozen=True)
class CallbacksView:
    """What the `callbacks` group asks for, as hydrafit's own code needs it (a population does
    the work of these callbacks for its members)."""

    names: tuple[str, ...]          # the callbacks configured, by their key in the group
    checkpoint_every: int           # callbacks.model_checkpoint.every_n_epochs (0: no periodic save)
    keeps_best: bool                # a best.ckpt by the lowest train/loss (save_top_k >= 1)
    fit_image: bool                 # callbacks.fit_plot: fit.png and the fit images
    pruning_metric: str | None = None  # callbacks.optuna_pruning.metric (None without it)
    pruning_every: int = 0          # callbacks.optuna_pruning.every_n_epochs
    # The paths are read when asked: they interpolate ${hydra:runtime.output_dir}, which resolves
    # only while the job's Hydra config is the current one (a population fits before that).
    node: DictConfig | None = field(default=None, repr=False, compare=False)

    @property
    def metrics_file(self) -> Path | None:
        """<callbacks.metrics_file.dirpath>/metrics.json, None without that callback."""
        return Path(self.node.metrics_file.dirpath) / "metrics.json" if "metrics_file" in self.names else None

    @property
    def checkpoints(self) -> Path | None:
        """callbacks.model_checkpoint.dirpath, None without that callback."""
        return Path(self.node.model_checkpoint.dirpath) if "model_checkpoint" in self.names else None

    @classmethod
    def of(cls, node: DictConfig | None) -> CallbacksView:
        checkpoint = (node or {}).get("model_checkpoint") or {}
        pruning = (node or {}).get("optuna_pruning") or {}
        return cls(
            names=tuple(str(k) for k, v in (node or {}).items() if v is not None), node=node,
            checkpoint_every=int(checkpoint.get("every_n_epochs") or 0),
            keeps_best=bool(checkpoint) and (checkpoint.get("save_top_k") or 0) >= 1
            and checkpoint.get("monitor") == "train/loss",
            fit_image="fit_plot" in (node or {}),
            pruning_metric=pruning.get("metric"), pruning_every=int(pruning.get("every_n_epochs") or 0))


@dataclass(frozen=True)
class RunView:
    """A job config's keys that hydrafit reads by name (KEYS)."""

    seed: int
    optimized_metric: str
    resume: str | None
    pbt_replay: str | None           # a PBT member's run dir to replay (engine.single.replayed_run)
    lr_find: bool
    max_epochs: int
    batch_size: int | None
    steps_per_batch: int
    standardize: bool
    lr: float | None
    scheduler: bool                 # a scheduler is configured
    profiler: bool                  # trainer.profiler is set: Lightning's own, not NoProfiler
    one_device: bool                # devices 1 and no DDP strategy
    accumulates: bool               # trainer.accumulate_grad_batches != 1
    val_every: int                  # trainer.check_val_every_n_epoch: the epochs val/loss is logged at
    gradient_clip_val: float | None  # trainer.gradient_clip_val (None or 0: no clipping)
    gradient_clip_algorithm: str    # trainer.gradient_clip_algorithm, Lightning's default "norm"
    callbacks: CallbacksView
    trainer: DictConfig = field(repr=False, compare=False)  # for run_dir, read when asked

    @property
    def run_dir(self) -> Path:
        """trainer.default_root_dir: the run's directory (see CallbacksView.node)."""
        return Path(self.trainer.default_root_dir)

    @classmethod
    def of(cls, cfg: DictConfig) -> RunView:
        data, trainer = cfg.dataset, cfg.trainer
        return cls(
            seed=int(cfg.seed), optimized_metric=str(cfg.optimized_metric), resume=cfg.get("resume"),
            pbt_replay=cfg.get("pbt_replay"),
            lr_find=bool(cfg.get("lr_find")), max_epochs=int(trainer.max_epochs), trainer=trainer,
            batch_size=data.get("batch_size"), steps_per_batch=int(data.get("steps_per_batch", 1)),
            standardize=bool(data.get("standardize")), lr=cfg.optimizer.get("lr"),
            scheduler=bool(cfg.get("scheduler")), profiler=bool(trainer.get("profiler")),
            one_device="ddp" not in str(trainer.get("strategy", "")) and trainer.get("devices", 1) in (1, "1"),
            accumulates=trainer.get("accumulate_grad_batches", 1) != 1,
            val_every=int(trainer.get("check_val_every_n_epoch") or 1),
            gradient_clip_val=float(trainer.get("gradient_clip_val") or 0) or None,
            gradient_clip_algorithm=str(trainer.get("gradient_clip_algorithm") or "norm"),
            callbacks=CallbacksView.of(cfg.get("callbacks")))
