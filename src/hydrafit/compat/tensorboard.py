"""TensorBoard's record checksums, computed in C.

TensorBoard checksums every event record with CRC-32C, in pure Python wherever TensorFlow is
not installed: 7 ms for a 40 kB fit image and 15 us a scalar, against ~1 us with google-crc32c's
C code (2-core AMD EPYC); the checksums are the same (tests/test_compat.py). Its record writer
looks the function up in its module, tensorboard.summary.writer.record_writer.masked_crc32c:
the one place replaced, and put back where a caller's process must stay as it was.
"""
from __future__ import annotations

import contextlib

import google_crc32c
from tensorboard.summary.writer import record_writer

CHECKED = "tensorboard 2.14 to 2.21"


def masked_crc32c(data: bytes) -> int:
    """TensorBoard's masking of the CRC, over C's CRC-32C."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def fast_event_checksums() -> None:
    """From now on, in this process: TensorBoard's record checksums in C."""
    record_writer.masked_crc32c = masked_crc32c


@contextlib.contextmanager
def checksums_in_c():
    """Within: fast_event_checksums; afterwards, TensorBoard's own function again."""
    original = record_writer.masked_crc32c
    record_writer.masked_crc32c = masked_crc32c
    try:
        yield
    finally:
        record_writer.masked_crc32c = original


def check() -> None:
    """Raise, naming TensorBoard, if its record writer no longer takes the function from its module."""
    import tensorboard

    if not callable(getattr(record_writer, "masked_crc32c", None)):
        raise RuntimeError(f"tensorboard {tensorboard.__version__}: record_writer.masked_crc32c is gone "
                           f"(hydrafit.compat.tensorboard was checked with {CHECKED})")
