"""CSV files as spreadsheet programs write them, read into numbers (dataset=csv, hydrafit-eval input=).

Excel, LibreOffice and Numbers write UTF-8 (with or without a byte-order mark), UTF-16 with a
byte-order mark ("Unicode text"), or the Windows code page (cp1252, a superset of latin-1's
printable characters); they separate cells with `,`, or with `;` or a tab where the decimal
separator is a comma; they quote cells, end lines with CRLF, leave blank lines. All of that is
read here. What cannot be read (a binary file, bytes of no known encoding, a row without the
needed column) is refused with one ConfigError line naming the file and the line, quoting at
most a few dozen characters of the file.
"""
from __future__ import annotations

import codecs
import csv
import io
import logging
import math
import re
from pathlib import Path

import numpy as np

from hydrafit.config.errors import ConfigError

log = logging.getLogger(__name__)

BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # before UTF-16's: FF FE 00 00
        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
DETECTED = ("utf-8", "cp1252")  # without a byte-order mark: UTF-8 if it decodes, else Excel's Windows code page
MAGIC = {b"\x89PNG": "a PNG image", b"PK\x03\x04": "a zip archive (an .xlsx or .ods workbook?)",
         b"\xd0\xcf\x11\xe0": "an old Excel .xls workbook", b"%PDF": "a PDF document",
         b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image"}
SNIFFED = (";\t", ",")  # `;` and tab first: a file of decimal commas has as many `,` as `;` per line
SAMPLE_CHARS = 65536    # what the delimiter is sniffed from: csv.Sniffer takes ~20 ms on 64 KiB here
SHOWN_CHARS = 40        # at most this much of a cell in a message (a binary or one-line file is huge)
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not in text: tab, LF, CR are
DECIMAL_COMMA = re.compile(r"[+-]?(\d+,\d*|,\d+)([eE][+-]?\d+)?")


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` as a message quotes it: at most `limit` characters, control characters escaped."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def decode(raw: bytes, encoding: str | None, where: str) -> str:
    """The text of a file's bytes: in `encoding` if given, else by its byte-order mark, else
    UTF-8, else cp1252. `where` ('dataset.path: data.csv') starts every message."""
    kind = next((name for magic, name in MAGIC.items() if raw.startswith(magic)), None)
    if kind:
        raise ConfigError(f"{where} is {kind}, not a CSV text file; export the data as CSV")
    bom = next((codec for mark, codec in BOMS if raw.startswith(mark)), None)
    candidates = [encoding] if encoding else [bom] if bom else list(DETECTED)
    for codec in candidates:
        try:
            text = raw.decode(codec)
            break
        except UnicodeDecodeError as error:
            failure = error
        except LookupError:
            raise ConfigError(f"dataset.encoding: unknown encoding '{clip(codec)}'; e.g. utf-8, "
                              f"cp1252, latin-1, utf-16 (Python's codec names)") from None
    else:
        line = raw[:failure.start].decode(codec, errors="replace").count("\n") + 1
        tried = f"as {encoding}" if encoding else f"as {bom}" if bom else "as UTF-8 or cp1252"
        hint = "" if encoding else "; if you know its encoding, give dataset.encoding=<codec>"
        raise ConfigError(f"{where}: line {line}: cannot be decoded {tried} ({failure.reason} "
                          f"at byte {failure.start}){hint}")
    return text.removeprefix("\ufeff")


def check_text(text: str, where: str) -> None:
    """Refuse text with control characters: what a binary file decodes to (NUL bytes: also
    UTF-16 without its byte-order mark)."""
    found = CONTROL.search(text)
    if found:
        line = text.count("\n", 0, found.start()) + 1
        hint = " (UTF-16 without a byte-order mark? give dataset.encoding=utf-16-le)" if found.group() == "\0" else ""
        raise ConfigError(f"{where}: line {line} holds the control character "
                          f"U+{ord(found.group()):04X}: not a text file{hint}")


def sniff_delimiter(text: str) -> str:
    """`;` or tab where csv.Sniffer finds one of them consistent across the first lines, else `,`
    (also for a one-column file, where the Sniffer finds none)."""
    lines = [line for line in text[:SAMPLE_CHARS].splitlines()[:-1 if len(text) > SAMPLE_CHARS else None]
             if line.strip()]  # whole, non-blank lines: blank ones break the Sniffer's consistency rule
    for candidates in SNIFFED:
        try:
            return csv.Sniffer().sniff("\n".join(lines), delimiters=candidates).delimiter
        except csv.Error:
            continue
    return ","


def rows(text: str, delimiter: str, where: str) -> list[tuple[int, list[str]]]:
    """(line number, cells) of each non-blank row."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as error:  # e.g. a field over csv.field_size_limit (128 KiB)
        raise ConfigError(f"{where}: line {reader.line_num}: not readable as CSV ({error})") from None


def number(cell: str, decimal: str = ".") -> float | None:
    """The finite float in a cell, or None (empty, text, nan, inf). With decimal ',' the
    comma is the decimal separator and a '.' makes the cell unreadable (a thousands separator?)."""
    cell = cell.strip()
    if decimal == ",":
        if "." in cell:
            return None
        cell = cell.replace(",", ".", 1)
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def is_number(cell: str) -> bool:
    return number(cell) is not None or DECIMAL_COMMA.fullmatch(cell.strip()) is not None


def decimal_mark(cells, delimiter: str, decimal: str) -> str:
    """The decimal separator: `decimal` if given ('.' or ','); 'auto' reads ',' in a file
    separated by ';' or tabs (as spreadsheets in comma-decimal locales write them) whose
    cells hold comma decimals, and '.' otherwise: in a ','-separated file a quoted "1,234" is
    more likely a thousands separator, so it is refused, not guessed."""
    if decimal != "auto":
        return decimal
    if delimiter == ",":
        return "."
    return "," if any(DECIMAL_COMMA.fullmatch(c.strip()) for c in cells) else "."


def column_indexes(header: list[str] | None, columns: dict[str, str | int], file: str) -> list[int]:
    """0-based indexes of `columns` ({config key: header name or index}) in a CSV file."""
    shown = clip(", ".join(header or []), 150)
    indexes = []
    for key, column in columns.items():
        if isinstance(column, int):
            if header is not None and column >= len(header):
                raise ConfigError(f"{key}: column index {column} is out of range; {file} has "
                                  f"{len(header)} columns: {shown}")
            indexes.append(column)
        elif header is None:
            raise ConfigError(f"{key}: no column '{column}' in {file}: it has no header row (its "
                              f"first row is all numbers); pick columns by index, e.g. {key}=0")
        elif column not in header:
            raise ConfigError(f"{key}: no column '{column}' in {file}; its columns are: {shown}")
        else:
            indexes.append(header.index(column))
    return indexes


def read_text(path: Path, file_key: str, encoding: str | None = None) -> str:
    """The decoded text of a CSV file, refused in one line if it is not text."""
    where = f"{file_key}: {path.name}"
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{where}: cannot be read ({error.strerror or type(error).__name__})") from None
    text = decode(raw, encoding, where)
    check_text(text, where)
    return text


def read_columns(path: Path, columns: dict[str, str | int], file_key: str,
                 drop_invalid: bool = False, hint: str = "", encoding: str | None = None,
                 delimiter: str | None = None, decimal: str = "auto") -> np.ndarray:
    """The `columns` ({config key: header name or 0-based index}) of a CSV file as a float64
    array with one row per data row. The first row is a header when any cell of it is not a
    number. Encoding, delimiter (one character, or 'tab') and decimal mark are detected unless
    given (None, None, 'auto').
    A row with a missing, non-numeric or infinite value in these columns is refused with its
    line number, or with `drop_invalid` left out with a warning."""
    text = read_text(path, file_key, encoding)
    delimiter = "\t" if delimiter in ("tab", "\\t") else delimiter or sniff_delimiter(text)
    table = rows(text, delimiter, f"{file_key}: {path.name}")
    if not table:
        raise ConfigError(f"{file_key}: {path.name} is empty")
    header = [c.strip() for c in table[0][1]] if not all(map(is_number, table[0][1])) else None
    indexes = column_indexes(header, columns, path.name)
    data = table[1:] if header else table
    mark = decimal_mark((row[i] for _, row in data for i in indexes if i < len(row)), delimiter, decimal)
    values, dropped = [], []
    for line, row in data:
        point = [number(row[i], mark) if i < len(row) else None for i in indexes]
        if None not in point:
            values.append(point)
        elif drop_invalid:
            dropped.append(line)
        else:
            raise invalid_cell(path.name, line, row, columns, indexes, point, delimiter, mark, hint, file_key)
    if dropped:
        log.warning("Dropped %d invalid rows of %s (lines %s)", len(dropped), path.name,
                    ", ".join(map(str, dropped[:20])) + (", ..." if len(dropped) > 20 else ""))
    return np.array(values, dtype=np.float64).reshape(-1, len(columns))


def invalid_cell(file, line, row, columns, indexes, point, delimiter, mark, hint, file_key) -> ConfigError:
    """The one line that refuses a row: its line, the column, the cell (clipped), and why."""
    key, i = next((k, i) for k, i, v in zip(columns, indexes, point) if v is None)
    if i >= len(row):  # a ragged row, or a file split at the wrong delimiter
        sep = "tab" if delimiter == "\t" else f"'{delimiter}'"
        cell = f"missing (the row has {len(row)} cell{'s' * (len(row) != 1)}, split at {sep})"
    elif not row[i].strip():
        cell = "missing (empty)"
    else:
        cell = f"'{clip(row[i].strip())}', not a finite number"
        if mark == "." and DECIMAL_COMMA.fullmatch(row[i].strip()):
            cell += " (a decimal comma? give dataset.decimal=',')"
    return ConfigError(f"{file_key}: line {line} of {file}: the {key} column ({columns[key]}) is {cell}{hint}")
