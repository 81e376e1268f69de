"""Validation of a composed config, run before anything is built, trained or written.

Hydra's struct mode already refuses overrides of keys that do not exist (`model.hiden=3`).
This module refuses what gets past it: keys added with `+`, `_target_`s outside the project's
namespaces, arguments a target does not take, and values out of range. Every failure is a
ConfigError whose message is one line that names the key and what is allowed.
"""
from __future__ import annotations

import codecs
import functools
import inspect
import typing
from numbers import Integral, Real

from hydra.utils import get_object
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

from hydrafit.config.errors import ConfigError, unknown_key
from hydrafit.config.expression import ExpressionError, parse

# Only these may be instantiated: a config (or an override) must never name os.system & co.
ALLOWED_TARGETS = ("hydrafit.", "torch.optim.", "pytorch_lightning.Trainer",
                   "pytorch_lightning.callbacks.", "pytorch_lightning.loggers.")
TOP_LEVEL_KEYS = ("seed", "optimized_metric", "resume", "overwrite", "lr_find", "dataset", "model", "optimizer", "scheduler",
                  "trainer", "callbacks", "logger",
                  "resume_sweep", "mlp_shape", "pbt_replay")  # hydrafit.sweeps; mlp_shape: hparams_search=optuna


# model.activation's names and the torch.nn classes hydrafit.models builds for them; model.init's
# names. Listed here, without torch, so that a refused command never imports it (~5 s here).
ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "gelu": "GELU", "silu": "SiLU", "sigmoid": "Sigmoid",
               "elu": "ELU", "leaky_relu": "LeakyReLU", "softplus": "Softplus"}
INITS = ("torch", "glorot_uniform")


@functools.lru_cache(maxsize=256)  # inspect.signature takes ~0.1 ms; a sweep checks each target once a job
def accepted_arguments(target) -> frozenset[str] | None:
    """Keyword arguments `target` takes; None if it takes any. A hydrafit factory taking
    **kwargs forwards them to the class it returns (its return annotation)."""
    params = inspect.signature(target).parameters
    names = frozenset(n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return names
    returned = typing.get_type_hints(target).get("return") if inspect.isfunction(target) else None
    if target.__module__.startswith("hydrafit.") and inspect.isclass(returned):
        return names | accepted_arguments(returned)
    return None


def check_targets(node, path: str = "") -> None:
    """Every `_target_` in the tree is allowed and every sibling key is one of its arguments."""
    if isinstance(node, ListConfig):
        for i, item in enumerate(node):
            check_targets(item, f"{path}[{i}]")
        return
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        target = str(node._target_)
        if not target.startswith(ALLOWED_TARGETS):
            raise ConfigError(f"{path}._target_: '{target}' is not allowed; targets must start "
                              f"with one of {', '.join(ALLOWED_TARGETS)}")
        accepted = accepted_arguments(get_object(target))
        for key in node:
            if not str(key).startswith("_") and accepted is not None and key not in accepted:
                raise unknown_key(f"{path}.{key}", accepted)
    for key, child in node.items_ex(resolve=False):
        check_targets(child, f"{path}.{key}" if path else str(key))


def _number(cfg: DictConfig, key: str, kind=Real, low=None, high=None, low_open=False):
    """The value at dotted `key`, checked to be a `kind` within [low, high] (or (low, ...))."""
    value = OmegaConf.select(cfg, key)
    name = "an integer" if kind is Integral else "a number"
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{key} must be {name}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{key} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{key} must be <= {high}, got {value}")
    return value


def _flag(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")


def check_batching(cfg: DictConfig) -> None:
    """dataset.batch_size (null: full batch) and dataset.steps_per_batch, for every dataset."""
    if cfg.dataset.get("batch_size") is not None:
        _number(cfg, "dataset.batch_size", Integral, low=1)
    if "steps_per_batch" in cfg.dataset:
        _number(cfg, "dataset.steps_per_batch", Integral, low=1)


def check_csv_dataset(cfg: DictConfig) -> None:
    """dataset=csv. The file itself (columns, rows) is checked when data.from_csv reads it."""
    d = cfg.dataset
    if OmegaConf.is_missing(d, "path") or not isinstance(d.path, str) or not d.path.strip():
        raise ConfigError("dataset.path: required: the CSV file to fit (relative to the launch "
                          "directory), e.g. dataset.path=data/my.csv")
    for key in ("x", "y"):
        column = d.get(key)
        if isinstance(column, bool) or not (isinstance(column, str) and column or
                                            isinstance(column, Integral) and column >= 0):
            raise ConfigError(f"dataset.{key} must be a column name or a 0-based column index, got {column!r}")
    check_batching(cfg)
    if _number(cfg, "dataset.val_fraction", low=0, high=1) == 1:
        raise ConfigError("dataset.val_fraction=1 leaves no training point; use < 1")
    if d.get("baseline_degree") is not None:
        _number(cfg, "dataset.baseline_degree", Integral, low=0)
    _flag(cfg, "dataset.standardize")
    _flag(cfg, "dataset.drop_invalid")
    check_csv_format(d)


def check_csv_format(d: DictConfig) -> None:
    """dataset.encoding, .delimiter, .decimal of dataset=csv (null / auto: detected, hydrafit.data.csvfile)."""
    encoding, delimiter, decimal = d.get("encoding"), d.get("delimiter"), d.get("decimal", "auto")
    if encoding is not None:
        try:
            codecs.lookup(str(encoding))
        except LookupError:
            raise ConfigError(f"dataset.encoding: unknown encoding '{encoding}'; null detects it, or "
                              f"e.g. utf-8, cp1252, latin-1, utf-16 (Python's codec names)") from None
    if delimiter is not None and not (delimiter in ("tab", "\\t") or isinstance(delimiter, str) and
                                      len(delimiter) == 1 and delimiter not in '"\r\n'):
        raise ConfigError(f"dataset.delimiter must be null (sniffed), tab or one character (quoted "
                          f"for Hydra: 'dataset.delimiter=\";\"'), got {delimiter!r}")
    if decimal not in ("auto", ".", ","):
        raise ConfigError(f"dataset.decimal must be auto, '.' or ',', got {decimal!r}")


def check_dataset(cfg: DictConfig) -> None:
    d = cfg.dataset
    if d.get("_target_") == "hydrafit.data.from_csv":  # dataset=csv: points from a file, not sampled
        check_csv_dataset(cfg)
        return
    _number(cfg, "dataset.n_points", Integral, low=2)
    _number(cfg, "dataset.noise_std", low=0)
    lo_hi = d.get("x_range")
    if not isinstance(lo_hi, ListConfig) or len(lo_hi) != 2 or not all(
            isinstance(v, Real) and not isinstance(v, bool) for v in lo_hi) or lo_hi[0] >= lo_hi[1]:
        raise ConfigError(f"dataset.x_range must be [low, high] numbers with low < high, got {lo_hi}")
    check_batching(cfg)
    val = _number(cfg, "dataset.val_fraction", low=0, high=1)
    if round(val * d.n_points) >= d.n_points:
        raise ConfigError(f"dataset.val_fraction={val} leaves no training point; use < 1")
    if d.get("baseline_degree") is not None:
        _number(cfg, "dataset.baseline_degree", Integral, low=0)
    if "coefficients" in d and (not isinstance(d.coefficients, ListConfig) or not d.coefficients
                                or not all(isinstance(c, Real) for c in d.coefficients)):
        raise ConfigError(f"dataset.coefficients must be a non-empty list of numbers, got {d.coefficients}")
    _flag(cfg, "dataset.standardize")
    if "expr" in d:  # dataset=expression: refuse a formula before anything is built
        try:
            parse(d.expr)
        except ExpressionError as error:
            raise ConfigError(f"dataset.expr: {error}") from None


def check_model(cfg: DictConfig) -> None:
    m = cfg.model
    if "hidden_dims" in m:
        dims = m.hidden_dims
        if not isinstance(dims, ListConfig) or not dims or not all(
                isinstance(h, Integral) and not isinstance(h, bool) and h >= 1 for h in dims):
            raise ConfigError(f"model.hidden_dims must be a non-empty list of integers >= 1, "
                              f"e.g. [16] or [32,32]; got {dims}")
    if "activation" in m and m.activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation: '{m.activation}' is not one of {', '.join(ACTIVATIONS)}")
    if "init" in m and m.init not in INITS:
        raise ConfigError(f"model.init: '{m.init}' is not one of {', '.join(INITS)}")
    if "degree" in m:
        _number(cfg, "model.degree", Integral, low=1)


def check_training(cfg: DictConfig) -> None:
    _number(cfg, "seed", Integral, low=0)
    _number(cfg, "optimizer.lr", low=0, low_open=True)
    _number(cfg, "trainer.max_epochs", Integral, low=1)
    _flag(cfg, "overwrite")
    if cfg.optimizer._target_.endswith("LBFGS") and cfg.dataset.get("batch_size") is not None:
        raise ConfigError("optimizer=lbfgs needs full batches: set dataset.batch_size=null")
    if cfg.callbacks and "fit_plot" in cfg.callbacks:
        _number(cfg, "callbacks.fit_plot.n_images", Integral, low=0)
    _flag(cfg, "lr_find")
    if cfg.get("lr_find") and cfg.optimizer._target_.endswith("LBFGS"):
        raise ConfigError("lr_find: Lightning's learning-rate finder raises the lr at every optimizer "
                          "step, which L-BFGS's line search does not follow; use it with adam, adamw or sgd")
    if cfg.callbacks and "optuna_pruning" in cfg.callbacks:  # hparams_search=optuna
        _number(cfg, "callbacks.optuna_pruning.every_n_epochs", Integral, low=1)


def check_multirun_strategy(trainer: DictConfig) -> None:
    """Lightning's subprocess DDP launcher re-runs sys.argv in each child, which under
    --multirun would re-run the whole sweep (Lightning #15737): refuse it, offer ddp_spawn."""
    strategy, devices = str(trainer.get("strategy", "auto")), trainer.get("devices", 1)
    spawned = "spawn" in strategy or "fork" in strategy
    if (strategy.startswith("ddp") and not spawned) or (strategy == "auto" and devices not in (1, "1")):
        raise ConfigError(f"trainer.strategy={strategy} (devices={devices}) cannot run under --multirun: "
                          f"Lightning's DDP launcher would re-run the sweep; use trainer.strategy=ddp_spawn")


def refuse_lr_find_in_sweeps(cfg: DictConfig) -> None:
    """lr_find picks one run's lr before it trains; a sweep's jobs (and a vectorised
    population, which trains many members with one optimizer) have no single run to ask."""
    if cfg.get("lr_find"):
        raise ConfigError("lr_find: finds the lr of one run; it cannot be combined with --multirun "
                          "(sweep optimizer.lr instead, or run lr_find=true once without -m)")


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first problem found in `cfg`."""
    for key in cfg:
        if key not in TOP_LEVEL_KEYS:
            raise unknown_key(str(key), TOP_LEVEL_KEYS)
    check_dataset(cfg)
    check_model(cfg)
    check_training(cfg)
    check_targets(cfg)  # last: importing each target imports torch and Lightning (~5 s here)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        check_multirun_strategy(cfg.trainer)
        refuse_lr_find_in_sweeps(cfg)
