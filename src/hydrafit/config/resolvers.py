"""The ${hydrafit.*} resolvers that conf/ uses, registered when this module is imported
(hydrafit.config.compose and the entry points import it before Hydra composes).

    ${hydrafit.run_dir:${resume},outputs/runs}     conf/hydra/default.yaml: a new or resumed run dir
    ${hydrafit.if_resume:${resume},a,b}            conf/hydra/default.yaml: .hydra/resume_<time>/ on resume
    ${hydrafit.hidden_dims:w,d}                    conf/hparams_search/optuna.yaml: [w] * d
    ${hydrafit.tensorboard_version:mode,dirname}   conf/logger/tensorboard.yaml
    ${hydrafit.gpus:accelerator,devices}           conf/hydra/launcher/slurm*.yaml: GPUs a SLURM job asks
"""
from __future__ import annotations

from omegaconf import ListConfig, OmegaConf

from hydrafit.rundir.dirs import new_run_dir


def if_resume(resume, when_resuming, otherwise):
    return when_resuming if resume else otherwise


def hidden_dims(width, depth):
    """[width] * depth: hparams_search=optuna searches MLP width and depth."""
    return OmegaConf.create([int(width)] * int(depth))


def tensorboard_version(mode, override_dirname) -> str:
    """The TensorBoard logger's version: '' in a single run (events in <run>/tensorboard/), the
    job's overrides in a sweep, so `tensorboard --logdir <sweep dir>` names each run
    <job num>/tensorboard/<overrides>. Cut to 200 characters (file names stop at 255)."""
    if getattr(mode, "name", mode) != "MULTIRUN":
        return ""
    return (override_dirname or "defaults")[:200]


def gpus(accelerator, devices):
    """The GPUs a SLURM job of a run with this trainer asks (hydra.launcher.gpus_per_task): none
    (None: sbatch is not asked for any, so a CPU node can take the job) unless the trainer trains
    on GPUs (trainer=gpu|ddp); then trainer.devices of them: a count, a list of device ids, or 1
    for `auto` and -1 (every GPU the job has: it has the ones it asks)."""
    if str(accelerator) not in ("gpu", "cuda"):
        return None
    if isinstance(devices, (list, ListConfig)):
        return len(devices)
    return int(devices) if str(devices).isdigit() and int(devices) > 0 else 1


# One resolver for the run dir (not `if_resume` around a creating one): OmegaConf resolves every
# argument, so a creating argument would make a stray directory on resume. Cached like Hydra's
# ${now:}: each job of a sweep gets the master config's value (copy_cache).
OmegaConf.register_new_resolver("hydrafit.run_dir", new_run_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("hydrafit.if_resume", if_resume, replace=True)
OmegaConf.register_new_resolver("hydrafit.hidden_dims", hidden_dims, replace=True)
OmegaConf.register_new_resolver("hydrafit.tensorboard_version", tensorboard_version, replace=True)
OmegaConf.register_new_resolver("hydrafit.gpus", gpus, replace=True)
