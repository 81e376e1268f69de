"""Which jobs of a sweep form a population: those whose configs differ only in keys that can be
vectorised (seeds, data, optimizer values, schedules, clipping, epochs, the shapes of hydrafit's
models), chunked at hydra.launcher.max_population.
The grouping line says, for every job that runs alone, why."""
from __future__ import annotations

import json
import logging
import math

from omegaconf import DictConfig, OmegaConf

from hydrafit.config.errors import refuse
from hydrafit.config.view import RunView
from hydrafit.engine.memberwise import HYPERPARAMETERS, KINDS

log = logging.getLogger(__name__)


# Keys whose values may differ between the members of a population (besides the optimizer's
# hyperparameters, memberwise.HYPERPARAMETERS): each member builds its own data, scaling and net
# from them, and trains with its own schedule, clipping and number of epochs.
VECTORIZED = ("seed", "model.init", "dataset.noise_std", "dataset.coefficients", "dataset.x_range",
              "dataset.amplitude", "dataset.frequency", "dataset.phase", "dataset.expr", "scheduler",
              "trainer.max_epochs", "trainer.gradient_clip_val", "mlp_shape")
# (mlp_shape: hparams_search=optuna's width and depth, which only make model.hidden_dims.)
# hydrafit's own models may differ in any argument (widths, depth, activation, degree): each
# architecture trains as its own stack in the population's fit (engine.stacked). A user's model
# may hold settings its repr does not show, so only its model.init may differ.
OWN_MODELS = ("hydrafit.models.mlp", "hydrafit.models.polynomial")

# Learning-rate schedules that change nothing but the lr, once an epoch: a member's is a table of
# its lrs (memberwise.lr_table). ReduceLROnPlateau reads a metric; CyclicLR and OneCycleLR change
# momentum too.
SCHEDULERS = tuple(f"torch.optim.lr_scheduler.{name}" for name in (
    "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
    "LinearLR", "ConstantLR", "PolynomialLR"))


# The callbacks a population does the work of, for each member (hydrafit.report.member); any other keeps
# a job out of populations.
CALLBACKS = ("fit_plot", "metrics_file", "model_checkpoint", "stop_on_divergence", "graceful_stop",
             "progress_bar", "optuna_pruning")


def not_vectorized(cfg: DictConfig) -> str | None:
    """Why the job `cfg` (its composed config, without `hydra`) cannot join a population, or None."""
    view = RunView.of(cfg)
    if view.resume is not None:  # resume_sweep=: a population trains its members from epoch 0
        return "continues from its last.ckpt"
    kind = KINDS.get(str(cfg.optimizer.get("_target_")))
    if kind is None:
        return f"optimizer {cfg.optimizer.get('_target_')} is not vectorised (only Adam, AdamW, SGD)"
    extra = [k for k in cfg.optimizer if not k.startswith("_") and k not in HYPERPARAMETERS[kind]]
    if extra:
        return f"optimizer.{extra[0]} is not vectorised"
    scheduler = str((cfg.get("scheduler") or {}).get("_target_"))
    if view.scheduler and scheduler not in SCHEDULERS:
        return f"scheduler {scheduler} is not vectorised (only {', '.join(s.rsplit('.', 1)[1] for s in SCHEDULERS)})"
    if view.accumulates:
        return "trainer.accumulate_grad_batches is not vectorised"
    if view.lr_find:
        return "lr_find=true runs Lightning's finder on one model: not vectorised"
    if not view.one_device:
        return "a population trains on one device"
    other = [k for k in view.callbacks.names if k not in CALLBACKS]
    if other:
        return f"callbacks.{other[0]} is not vectorised"
    return None


def population_key(cfg: DictConfig) -> str:
    """What members of one population share: the config without its vectorised keys."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    kind = KINDS[str(cfg.optimizer._target_)]
    own = cfg.model.get("_target_") in OWN_MODELS
    model = [f"model.{k}" for k in cfg.model if k != "_target_"] if own else []
    for key in (*VECTORIZED, *(f"optimizer.{k}" for k in HYPERPARAMETERS[kind]), *model):
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node.get(p) or {}
        node.pop(leaf, None)
    return json.dumps(tree, sort_keys=True, default=str)


def flat(tree, prefix: str = "") -> dict:
    """{'model': {'hidden_dims': [8]}} -> {'model.hidden_dims': [8]}."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}.{key}".lstrip(".")).items()}


def split_keys(keys: list[str]) -> list[str]:
    """The config keys whose values differ between population keys (why jobs were split)."""
    flats = [flat(json.loads(k)) for k in keys]
    names = dict.fromkeys(n for f in flats for n in f)
    return [n for n in names if len({json.dumps(f.get(n), default=str) for f in flats}) > 1]


def group(configs: list[DictConfig | None], max_population: int | None) -> list[tuple[list[int], str | None]]:
    """Populations of the jobs, as (job indexes, None) or, for a job that runs alone as an
    ordinary run, ([index], why). A None config (one that does not compose or validate) runs
    alone: the ordinary path records its failure."""
    groups: dict[str, list[int]] = {}
    alone: list[tuple[list[int], str | None]] = []
    for i, cfg in enumerate(configs):
        why = "its config is invalid" if cfg is None else not_vectorized(cfg)
        if why:
            alone.append(([i], why))
        else:
            groups.setdefault(population_key(cfg), []).append(i)
    size = max_population or math.inf
    chunks = [(jobs[s:s + int(min(size, len(jobs)))], None) for jobs in groups.values()
              for s in range(0, len(jobs), int(min(size, len(jobs))))]
    plan = sorted(chunks + alone, key=lambda c: c[0][0])
    describe(len(configs), plan, list(groups), max_population)
    return plan


def describe(n_jobs: int, plan, keys: list[str], max_population) -> None:
    """One line per population at sweep start: `vectorized: 120 jobs -> 1 population of 120`."""
    sizes = [len(jobs) for jobs, why in plan if why is None]
    text = f"vectorized: {n_jobs} jobs -> {len(sizes)} population{'s' * (len(sizes) != 1)}"
    if sizes:
        text += f" of {', '.join(map(str, sizes))}"
    if len(keys) > 1:
        text += f" (split by {', '.join(split_keys(keys))})"
    if len(sizes) > len(keys):
        text += f" (chunks of at most hydra.launcher.max_population={max_population})"
    log.info(text)
    for jobs, why in plan:
        if why is not None:
            log.info("vectorized: job #%d runs alone: %s", jobs[0], why)


def one_population(plan, numbers: list[int], built: list, max_population: int | None) -> None:
    """Refuse in one line a PBT run whose members would not all train in one population: PBT's
    exploits copy between the members of one fit."""
    for jobs, why in plan:
        if why is not None:
            refuse(f"hparams_search=pbt trains every member in one population; job #{numbers[jobs[0]]} "
                   f"cannot join it: {why}")
    if len(plan) > 1:
        refuse(f"hparams_search=pbt trains every member in one population: hydra.launcher.max_population "
               f"({max_population}) is below hydra.sweeper.population ({len(numbers)})")
    if any(built[i] is None for i in plan[0][0]):
        refuse("hparams_search=pbt trains every member in one population; a member's data or net could not be "
               "built (hydrafit-train with its overrides, without -m, says why)")
