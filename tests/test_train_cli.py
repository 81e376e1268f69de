"""hydrafit-train as a user runs it: a subprocess in another directory, with overrides."""
from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import hydrafit
from conftest import read_metrics, run_cli

# Golden numbers of the default run (seed 12345) on this project's 2-core x86_64 CI machine.
# Tolerance: 2% relative, for other CPUs/BLAS builds; on the same machine runs are bitwise equal.
GOLDEN = {"train/mse": 0.0100634, "truth/rmse": 0.0527495, "baseline/truth_rmse": 0.00741905}
SHORT = ("trainer.max_epochs=5", "callbacks.fit_plot.n_images=1")


def test_default_run_meets_the_quality_bar_and_golden_numbers(default_run):
    metrics = read_metrics(default_run)
    assert metrics["status"] == "completed" and metrics["epochs"] == 250
    assert metrics["train/mse"] <= 0.025 and metrics["truth/rmse"] <= 0.12
    for key, value in GOLDEN.items():
        assert metrics[key] == pytest.approx(value, rel=0.02), key
    assert 0 < metrics["fit_seconds"] < 120
    assert "val/mse" not in metrics  # no split by default, like the tutorial


def test_event_checksums_are_tensorboards_own(default_run):
    """hydrafit.compat.tensorboard: C's CRC-32C, masked as TensorBoard masks it, equals
    TensorBoard's pure-Python checksum; and TensorBoard's own record reader, which checks every
    record's checksums with that pure-Python code, reads a run's whole event file."""
    import os

    from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow
    from tensorboard.summary.writer import record_writer

    from hydrafit.compat.tensorboard import fast_event_checksums

    fast_event_checksums()
    for data in (b"", b"x", os.urandom(8), os.urandom(5000)):
        assert record_writer.masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)
    (events,) = (default_run / "tensorboard").glob("events.out.tfevents.*")
    reader, records = pywrap_tensorflow.PyRecordReader_New(str(events)), 0
    with pytest.raises(errors.OutOfRangeError):  # the end of the file, after every record checked
        while True:
            reader.GetNext()
            records += 1
    assert records > 250  # a scalar an epoch, the images, hparams


def test_default_run_leaves_the_documented_files(default_run):
    names = {p.name for p in default_run.iterdir()}
    assert {".hydra", "fit.png", "metrics.json", "tensorboard", "checkpoints", "train.log"} <= names
    assert {"config.yaml", "overrides.yaml", "hydra.yaml"} <= {p.name for p in (default_run / ".hydra").iterdir()}
    assert (default_run / "checkpoints" / "last.ckpt").stat().st_size > 0
    log = (default_run / "train.log").read_text()
    assert "Dataset    hydrafit.data.polynomial" in log and "truth/rmse = " in log
    assert not list(default_run.parent.parent.parent.glob("lightning_logs"))  # nothing in launch dir


def test_fit_png_is_a_real_picture(default_run):
    from PIL import Image

    with Image.open(default_run / "fit.png") as image:
        assert image.format == "PNG" and image.size == (600, 400)
        colors = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colors is not None and len(colors) > 50  # lines, markers, text: not a blank canvas


def tensorboard_events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_tensorboard_has_loss_per_epoch_fit_images_and_hparams(default_run):
    acc = tensorboard_events(default_run)
    losses = acc.Scalars("train/loss")
    assert len(losses) == 250
    assert losses[-1].value < losses[0].value / 50
    images = acc.Images("fit")
    assert 8 <= len(images) <= 12  # ~10 during training + the final one
    assert [i.step for i in images] == sorted(i.step for i in images) and images[-1].step == 250
    assert acc.Scalars("truth/rmse")[-1].value == pytest.approx(
        read_metrics(default_run)["truth/rmse"], rel=1e-6)
    plugin = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"])
    hparams = session.session_start_info.hparams
    assert hparams["optimizer/lr"].number_value == pytest.approx(0.03)
    assert hparams["model/activation"].string_value == "relu"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/experiment"])
    metric_tags = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"train/mse", "truth/rmse", "baseline/truth_rmse"} <= metric_tags
    assert "hp_metric" not in acc.Tags()["scalars"]


def test_checkpoint_reloads_with_weights_only_and_predicts_identically(default_run):
    from hydrafit.metrics import final_metrics
    from hydrafit.models import Regressor
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    ckpt = default_run / "checkpoints" / "last.ckpt"
    raw = torch.load(ckpt, weights_only=True)  # plain containers only
    assert raw["epoch"] == 250
    module = Regressor.load_from_checkpoint(ckpt)  # torch's default weights_only=True
    cfg = OmegaConf.load(default_run / ".hydra" / "config.yaml")
    datamodule = instantiate(cfg.dataset, seed=cfg.seed, _convert_="all")
    recomputed = final_metrics(module.net, datamodule)
    saved = read_metrics(default_run)
    for key, value in recomputed.items():
        assert value == saved[key], key  # exactly: same weights, same data, same arithmetic


def test_fit_resumes_from_checkpoint_under_weights_only(default_run, tmp_path):
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from hydrafit.models import Regressor

    cfg = OmegaConf.load(default_run / ".hydra" / "config.yaml")
    datamodule = instantiate(cfg.dataset, seed=cfg.seed, _convert_="all")
    module = Regressor(OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.optimizer))
    trainer = pl.Trainer(max_epochs=255, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=default_run / "checkpoints" / "last.ckpt",
                weights_only=True)
    assert trainer.current_epoch == 255 and trainer.global_step == 255


def test_overrides_from_another_directory(tmp_path):
    run = tmp_path / "run"
    run_cli("model.hidden_dims=[32,32]", "model.activation=tanh", "optimizer=sgd",
            "optimizer.lr=0.1", "trainer.max_epochs=30", f"hydra.run.dir={run}", cwd=tmp_path)
    cfg = (run / ".hydra" / "config.yaml").read_text()
    assert "torch.optim.SGD" in cfg and "activation: tanh" in cfg
    assert read_metrics(run)["epochs"] == 30
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["state_dict"]["net.2.weight"].shape == (32, 32)  # 1 -> 32 -> 32 -> 1
    assert len(tensorboard_events(run).Scalars("train/loss")) == 30


def test_polynomial_model_is_the_right_tool(tmp_path):
    run = tmp_path / "run"
    run_cli("model=polynomial", "model.degree=2", "callbacks.fit_plot.n_images=0",
            f"hydra.run.dir={run}", cwd=tmp_path)
    assert read_metrics(run)["truth/rmse"] <= 0.03


def test_lbfgs_reevaluates_the_loss_through_its_closure(tmp_path):
    """Ten L-BFGS epochs reach the noise floor; ten Adam epochs are nowhere near it."""
    short = ("trainer.max_epochs=10", "callbacks.fit_plot.n_images=0")
    run_cli("optimizer=lbfgs", *short, f"hydra.run.dir={tmp_path / 'lbfgs'}", cwd=tmp_path)
    adam = hydrafit.fit(["optimizer=adam", *short], run_dir=tmp_path / "adam")  # the reference, in-process
    assert read_metrics(tmp_path / "lbfgs")["train/mse"] < 0.03 < adam.metrics["train/mse"]


def test_validation_split_reports_val_mse(tmp_path):
    run = tmp_path / "run"
    run_cli("dataset.val_fraction=0.25", "logger=csv", *SHORT, f"hydra.run.dir={run}", cwd=tmp_path)
    metrics = read_metrics(run)
    assert metrics["val/mse"] > 0 and metrics["status"] == "completed"
    assert "val/loss" in (run / "csv" / "metrics.csv").read_text().splitlines()[0]


def test_callbacks_none_and_logger_none_run_bare(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("callbacks=none", "logger=none", "trainer.max_epochs=3", f"hydra.run.dir={run}", cwd=tmp_path)
    assert {p.name for p in run.iterdir()} == {".hydra", "train.log"}
    assert "Training" not in proc.stderr  # no progress bar


def test_debug_trainer_runs_one_batch(tmp_path):
    run = tmp_path / "run"
    run_cli("trainer=debug", f"hydra.run.dir={run}", cwd=tmp_path)
    assert read_metrics(run)["epochs"] == 1


def test_cfg_job_prints_the_composed_config_and_trains_nothing(tmp_path):
    proc = run_cli("--cfg", "job", "optimizer.lr=0.01", cwd=tmp_path)
    assert "lr: 0.01" in proc.stdout and "_target_: hydrafit.models.mlp" in proc.stdout
    assert not (tmp_path / "outputs").exists()


# Bad input through the CLI (one line, exit 2, no result-like artifact in the run dir Hydra made):
# tests/test_robustness.py::test_bad_value_is_one_line_and_exit_2_from_the_cli, the same overrides among its cases.


def test_torch_and_lightning_are_imported_out_of_the_cycle_collectors_way():
    """train.import_lightning, in a fresh interpreter as each hydrafit-train starts: the objects
    the import makes are frozen (gc.freeze), the collector is on again, a second call changes
    nothing, and no full collection ran during the import."""
    import subprocess
    import sys

    code = """
import gc
full = []
gc.callbacks.append(lambda phase, info: phase == "stop" and info["generation"] == 2 and full.append(1))
from hydrafit.engine.startup import import_lightning
import_lightning()
frozen = gc.get_freeze_count()
import_lightning()
print(frozen, gc.get_freeze_count(), gc.isenabled(), len(full))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    frozen, again, enabled, full = int(out[0]), int(out[1]), out[2], int(out[3])
    assert frozen > 100_000 and again == frozen and enabled == "True" and full == 0
