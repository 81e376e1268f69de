"""Every option of every config group composes, validates and instantiates."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO
from hydrafit.config.compose import compose_job
from hydrafit.config.validate import validate
from hydrafit.engine.single import build

GROUPS = ("dataset", "model", "optimizer", "scheduler", "trainer", "callbacks", "logger", "experiment")
# Options whose files need something this machine may lack, or a user-supplied value.
NEEDS = {("trainer", "gpu"): torch.cuda.is_available, ("trainer", "ddp"): torch.cuda.is_available,
         ("logger", "mlflow"): lambda: bool(importlib.util.find_spec("mlflow")),
         ("logger", "many"): lambda: bool(importlib.util.find_spec("mlflow"))}
SUPPLIED = {("dataset", "csv"): (f"dataset.path={REPO / 'examples' / 'data' / 'temperature.csv'}",
                                 "dataset.x=day", "dataset.y=temp_c")}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))


def compose_run(tmp_path: Path, *overrides: str):
    """conf/train.yaml composed as hydrafit-train would, its output dir tmp_path."""
    return compose_job(list(overrides), tmp_path)


CASES = [(g, o) for g in GROUPS for o in options(g)]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_option_composes_and_instantiates(tmp_path, monkeypatch, group, option):
    if (group, option) in NEEDS and not NEEDS[(group, option)]():
        pytest.skip(f"{group}={option} needs CUDA or the mlflow extra")
    monkeypatch.chdir(tmp_path)  # logger=mlflow's store: outputs/mlflow.db of the launch directory
    cfg = compose_run(tmp_path, f"{group}={option}", *SUPPLIED.get((group, option), ()))
    validate(cfg)
    datamodule, module, trainer = build(cfg)
    n_points = cfg.dataset.get("n_points", len(datamodule.x_train) + len(datamodule.x_val))  # csv: the file's
    assert len(datamodule.x_train) == n_points - round(cfg.dataset.val_fraction * n_points)
    assert module(datamodule.x_train[:4]).shape == (4, 1)
    optimizers = module.configure_optimizers()
    optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert trainer.max_epochs == cfg.trainer.max_epochs or cfg.trainer.get("fast_dev_run")


def test_group_options_are_the_documented_contract():
    """The option names other issues and users rely on."""
    assert {"polynomial", "sine"} <= set(options("dataset"))
    assert {"mlp", "polynomial"} <= set(options("model"))
    assert {"adam", "adamw", "sgd", "lbfgs"} <= set(options("optimizer"))
    assert {"none", "cosine", "step"} <= set(options("scheduler"))
    assert {"default", "cpu", "gpu", "debug"} <= set(options("trainer"))
    assert {"default", "none"} <= set(options("callbacks"))
    assert {"tensorboard", "csv", "mlflow", "many", "none"} <= set(options("logger"))
    assert "lux_tutorial" in options("experiment")


def test_defaults_are_the_lux_tutorial(tmp_path):
    cfg = compose_run(tmp_path)
    assert OmegaConf.to_container(cfg.dataset.coefficients) == [0, -2, 1]
    assert (cfg.dataset.n_points, list(cfg.dataset.x_range), cfg.dataset.noise_std) == (128, [-2, 2], 0.1)
    assert cfg.dataset.batch_size is None and cfg.dataset.val_fraction == 0
    assert (list(cfg.model.hidden_dims), cfg.model.activation) == ([16], "relu")
    assert (cfg.optimizer._target_, cfg.optimizer.lr) == ("torch.optim.Adam", 0.03)
    assert (cfg.trainer.max_epochs, cfg.trainer.accelerator, cfg.trainer.devices) == (250, "auto", 1)
    assert (cfg.seed, cfg.optimized_metric) == (12345, "truth/rmse")
    net = build(cfg)[1].net
    assert sum(p.numel() for p in net.parameters()) == 49  # Chain(Dense(1=>16, relu), Dense(16=>1))


def test_lux_tutorial_applies_glorot_init_zero_bias_and_julia_eps(tmp_path):
    cfg = compose_run(tmp_path, "experiment=lux_tutorial")
    _, module, _ = build(cfg)
    linears = [m for m in module.net if isinstance(m, torch.nn.Linear)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    # glorot_uniform bound: sqrt(6 / (fan_in + fan_out)) = sqrt(6/17) for both 1=>16 and 16=>1
    assert all(m.weight.abs().max() <= (6 / 17) ** 0.5 for m in linears)
    # torch's default init caps the 16=>1 weights at 1/sqrt(16); glorot's 16 draws exceed it
    assert linears[1].weight.abs().max() > 0.25
    default_net = build(compose_run(tmp_path))[1].net
    assert torch.count_nonzero(default_net[0].bias) > 0 and default_net[2].weight.abs().max() <= 0.25
    optimizer = module.configure_optimizers()
    assert optimizer.defaults["eps"] == pytest.approx(1.1920929e-7, rel=1e-9)
    assert tuple(optimizer.defaults["betas"]) == (0.9, 0.999)

    default_opt = build(compose_run(tmp_path))[1].configure_optimizers()
    assert default_opt.defaults["eps"] == 1e-8


def test_trainer_flags_pass_through(tmp_path):
    cfg = compose_run(tmp_path, "trainer.precision=64-true", "trainer.gradient_clip_val=0.5",
                      "+trainer.min_epochs=3")
    validate(cfg)
    _, _, trainer = build(cfg)
    assert trainer.gradient_clip_val == 0.5 and trainer.min_epochs == 3
    assert trainer.precision == "64-true"


def test_interpolations_parsed_once_resolve_in_each_config_and_the_parser_is_put_back():
    """compat.omegaconf.parsing_cached: one parse tree per interpolation text serves every
    config that holds the text, each resolving it against its own values; OmegaConf's own parser
    is back once the block ends."""
    from omegaconf import base, grammar_parser

    from hydrafit.compat.omegaconf import parsing_cached

    with parsing_cached(), parsing_cached():  # nested: one cache, not a cache of a cache
        assert not hasattr(base.parse.__wrapped__, "cache_info")
        texts = {"dir": "${root}/runs/${name}", "n": "${oc.select:missing,${k}}", "plain": "${k}"}
        first = OmegaConf.create({"root": "/a", "name": "one", "k": 1, **texts})
        second = OmegaConf.create({"root": "/b", "name": "two", "k": 2, **texts})
        before = base.parse.cache_info().hits
        assert OmegaConf.to_container(first, resolve=True) == {"root": "/a", "name": "one", "k": 1,
                                                                "dir": "/a/runs/one", "n": 1, "plain": 1}
        assert OmegaConf.to_container(second, resolve=True) == {"root": "/b", "name": "two", "k": 2,
                                                                 "dir": "/b/runs/two", "n": 2, "plain": 2}
        assert base.parse.cache_info().hits >= before + 3  # the second config reused the first's trees
        with pytest.raises(Exception, match="missing"):  # errors are raised, never cached as results
            OmegaConf.create({"x": "${missing}"}).x
    assert base.parse is grammar_parser.parse
