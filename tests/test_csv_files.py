"""dataset=csv on files as they come from the wild (hydrafit.data.csvfile): each generated file of a
small fuzz set is either read with the right numbers or refused with one short line naming
the file, the line and what is wrong; one end-to-end run of hydrafit-train on a PNG saved as
.csv and on an Excel-on-Windows file (cp1252, `;`, decimal commas)."""
from __future__ import annotations

import codecs
import io
import json
import random

import numpy as np
import pytest

from conftest import run_cli
from hydrafit.config.errors import ConfigError
from hydrafit.data.csvfile import read_columns

X, Y = [1.5, 2.5, -3.0, 0.004], [10.25, -20.0, 1000.0, 7.0]


def table(delimiter=",", decimal=".", header=("x", "y"), newline="\n", quote=False, blank=False) -> str:
    """The points (X, Y) as a spreadsheet would write them."""
    def cell(v):
        text = repr(v).replace(".", decimal) if decimal != "." else repr(v)
        return f'"{text}"' if quote else text
    lines = [delimiter.join(header)] + [delimiter.join([cell(x), cell(y)]) for x, y in zip(X, Y)]
    if blank:
        lines = [line for pair in zip(lines, [""] * len(lines)) for line in pair]
    return newline.join(lines) + newline


def png_bytes() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


READ = {  # name: (file bytes, read_columns options, columns)
    "utf8": (table().encode(), {}, ("x", "y")),
    "utf8 BOM, CRLF": (codecs.BOM_UTF8 + table(newline="\r\n").encode(), {}, ("x", "y")),
    "utf16-le BOM, tabs (Excel's Unicode text)": (table("\t", newline="\r\n").encode("utf-16"), {}, ("x", "y")),
    "utf16-be BOM": (codecs.BOM_UTF16_BE + table(";", ",").encode("utf-16-be"), {}, ("x", "y")),
    "cp1252, ';', decimal comma, CRLF (Excel on Windows)":
        (table(";", ",", ("Zeit (µs)", "Température €"), "\r\n").encode("cp1252"), {}, ("Zeit (µs)", "Température €")),
    "latin-1 header": (table(header=("x", "débit")).encode("latin-1"), {}, ("x", "débit")),
    "';' with dot decimals": (table(";"), {}, ("x", "y")),
    "tab": (table("\t").encode(), {}, ("x", "y")),
    "delimiter=tab given": (table("\t").encode(), {"delimiter": "tab"}, ("x", "y")),
    "quoted numbers": (table(quote=True).encode(), {}, ("x", "y")),
    "quoted decimal commas with ';'": (table(";", ",", quote=True).encode(), {}, ("x", "y")),
    "blank lines": (table(blank=True, newline="\r\n").encode(), {}, ("x", "y")),
    "no header, ';', decimal comma": (table(";", ",").split("\n", 1)[1].encode(), {}, (0, 1)),
    "decimal=',' and delimiter=';' given": (table(";", ","), {"decimal": ",", "delimiter": ";"}, ("x", "y")),
    "utf16-le without BOM, encoding given": (table().encode("utf-16-le"), {"encoding": "utf-16-le"}, ("x", "y")),
    "very long line of many cells": (("x,y," + ",".join(["1"] * 200_000) + "\n" + "\n".join(
        f"{x},{y}" for x, y in zip(X, Y)) + "\n").encode(), {}, ("x", "y")),
}
READ = {name: (data.encode() if isinstance(data, str) else data, opts, cols)
        for name, (data, opts, cols) in READ.items()}

REFUSED = {  # name: (file bytes, read_columns options, what the line must say)
    "a PNG saved as .csv": (png_bytes(), {}, "is a PNG image, not a CSV text file"),
    "an .xlsx saved as .csv": (b"PK\x03\x04" + bytes(range(256)) * 20, {}, "is a zip archive"),
    "random bytes": (random.Random(0).randbytes(4096), {}, "line "),
    "truncated UTF-16": (table().encode("utf-16")[:-1], {}, "cannot be decoded as utf-16 (truncated data"),
    "NUL bytes in UTF-8": (b"x,y\n1,2\n3,\x00\x004\n", {}, "line 3 holds the control character U+0000"),
    "UTF-16 without BOM": (table().encode("utf-16-le"), {}, "UTF-16 without a byte-order mark?"),
    "bytes neither UTF-8 nor cp1252": (b"x,y\n1,2\n3,4\x81\n", {}, "line 3: cannot be decoded as UTF-8 or cp1252"),
    "unknown encoding": (table().encode(), {"encoding": "klingon"}, "dataset.encoding: unknown encoding 'klingon'"),
    "wrong encoding given": (table(header=("x", "Größe")).encode("cp1252"), {"encoding": "utf-8"},
                             "line 1: cannot be decoded as utf-8"),
    "ragged: a row without the y column": (b"x,y\n1,2\n3\n5,6\n", {}, "line 3 of data.csv: the dataset.y column (y) "
                                           "is missing (the row has 1 cell, split at ',')"),
    "mixed delimiters": (b"x,y\n1;2\n3,4\n5,6\n", {}, "line 2 of data.csv: the dataset.x column (x) is '1;2', not a finite number"),
    "decimal comma in a ',' file": (b'x,y\n"1,5","2,5"\n3,4\n', {}, "(a decimal comma? give dataset.decimal=',')"),
    "a 1 MB cell": (b"x,y\n1,2\n" + b"9" * 1_000_000 + b"\n", {}, "line 3: not readable as CSV (field larger than field limit"),
    "a 1 MB non-number": (b"x,y\n1,2\n3," + b"a" * 100_000 + b"\n", {}, "line 3 of data.csv: the dataset.y column (y) is 'aaaa"),
    "a thousands separator with decimal comma": ("x;y\n1.234,5;2\n".encode(), {}, "is '1.234,5', not a finite number"),
    "no column x: a header of 100 kB": ((",".join(f"c{i}" for i in range(20_000)) + "\n1,2\n").encode(), {},
                                        "dataset.x: no column 'x' in data.csv; its columns are: c0, c1"),
}


def read(tmp_path, data: bytes, options: dict, columns=("x", "y")) -> np.ndarray:
    (tmp_path / "data.csv").write_bytes(data)
    return read_columns(tmp_path / "data.csv", {"dataset.x": columns[0], "dataset.y": columns[1]},
                        "dataset.path", **options)


@pytest.mark.parametrize("name", READ)
def test_what_spreadsheets_write_is_read_with_the_right_numbers(tmp_path, name):
    data, options, columns = READ[name]
    points = read(tmp_path, data, options, columns)
    np.testing.assert_array_equal(points, np.array([X, Y]).T)


@pytest.mark.parametrize("name", REFUSED)
def test_what_cannot_be_read_is_refused_in_one_short_line(tmp_path, name):
    data, options, message = REFUSED[name]
    with pytest.raises(ConfigError) as refused:
        read(tmp_path, data, options)
    text = str(refused.value)
    assert message in text
    assert "\n" not in text and len(text) <= 250, text  # never a dump of the file
    assert "data.csv" in text or text.startswith("dataset.encoding"), text


def test_cli_png_is_one_line_exit_2_and_excel_file_trains_in_a_sweep(tmp_path):
    """The real command: a PNG as .csv is refused in one line (exit 2, no metrics.json);
    in a sweep over it and an Excel-on-Windows file, the PNG job's metrics.json holds only the
    short message and the other job trains on the right numbers."""
    (tmp_path / "image.csv").write_bytes(png_bytes())
    (tmp_path / "excel.csv").write_bytes(table(";", ",", ("Zeit", "Température °C"), "\r\n").encode("cp1252"))
    common = ["dataset=csv", "dataset.x=0", "dataset.y=1", "dataset.val_fraction=0",
              "optimized_metric=train/mse", "trainer.max_epochs=3", "callbacks.fit_plot.n_images=0", "logger=none"]
    proc = run_cli(*common, "dataset.path=image.csv", "hydra.run.dir=single", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("hydrafit-train: error: dataset.path: image.csv is a PNG image, "
                                   "not a CSV text file; export the data as CSV")
    assert not (tmp_path / "single" / "metrics.json").exists()  # Hydra's .hydra/ and train.log only

    proc = run_cli("-m", *common, "dataset.path=image.csv,excel.csv", "hydra.sweep.dir=sweep",
                   cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    failed = json.loads((tmp_path / "sweep" / "0" / "metrics.json").read_text())
    assert failed == {"status": "failed", "error": "ConfigError: dataset.path: image.csv is a PNG "
                                                   "image, not a CSV text file; export the data as CSV"}
    trained = json.loads((tmp_path / "sweep" / "1" / "metrics.json").read_text())
    assert trained["status"] == "completed" and np.isfinite(trained["train/mse"])
    assert len(proc.stderr) < 5000  # the sweep's own report, not the file's bytes
