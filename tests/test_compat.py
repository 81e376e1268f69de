"""The private names hydrafit.compat uses still exist in the installed libraries (an upgrade that
breaks one fails here, naming the library), and a caller's Python process is as it was after
hydrafit.fit and hydrafit.load."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("library", ["hydra", "omegaconf", "lightning", "tensorboard", "stdlib", "submitit"])
def test_private_names_still_exist(library):
    import importlib

    if library == "submitit":
        pytest.importorskip("submitit")  # the sweeps extra
    importlib.import_module(f"hydrafit.compat.{library}").check()


def test_c_checksums_equal_tensorboards_own():
    """compat.tensorboard: C's CRC-32C, masked as TensorBoard masks it, equals TensorBoard's
    pure-Python checksum; checksums_in_c puts TensorBoard's own function back."""
    from tensorboard.summary.writer import record_writer

    from hydrafit.compat.tensorboard import checksums_in_c, masked_crc32c

    own = record_writer.masked_crc32c
    for data in (b"", b"hydrafit", bytes(range(256)) * 40):
        assert masked_crc32c(data) == own(data)
    with checksums_in_c():
        assert record_writer.masked_crc32c is masked_crc32c
    assert record_writer.masked_crc32c is own


CALLER = r"""
import gc, logging, signal, sys, warnings
import omegaconf.base, omegaconf._utils
from hydra.core.hydra_config import HydraConfig
from tensorboard.summary.writer import record_writer
import hydrafit

def state():
    lightning_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    return dict(warnings=list(warnings.filters), lightning_filters=list(lightning_log.filters),
                parse=(omegaconf.base.parse, omegaconf._utils.parse), crc=record_writer.masked_crc32c,
                signals={s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)},
                hydra=HydraConfig.instance().cfg, frozen=gc.get_freeze_count(), gc=gc.isenabled(),
                root=(logging.getLogger().level, list(logging.getLogger().handlers)))

before = state()
result = hydrafit.fit(["trainer.max_epochs=3", "callbacks.fit_plot.n_images=1"], run_dir=sys.argv[1])
after_fit = state()
hydrafit.load(result.run_dir)
after_load = state()
for name in before:
    assert after_fit[name] == before[name], (name, before[name], after_fit[name])
    assert after_load[name] == before[name], (name, before[name], after_load[name])
print("unchanged", result.metrics["status"])
"""


def test_a_callers_process_is_as_it_was_after_fit_and_load(tmp_path):
    proc = subprocess.run([sys.executable, "-c", CALLER, str(tmp_path / "run")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "unchanged completed"
