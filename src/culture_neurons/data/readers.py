"""Reading benchmark files (CSV, TSV, JSON, JSONL, parquet) and hub datasets into rows.

Every row remembers where it came from (``Row.where``: file and line, or hub id and row) so that
a bad value can be reported as ``file:line: what is wrong, and the fix``. Undecodable bytes, empty
files and missing columns are reported here, before any benchmark logic runs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class Row(dict):
    """A record (column → value) that knows where it was read from."""

    where: str = "?"

    @classmethod
    def make(cls, data: dict[str, Any], where: str) -> Row:
        row = cls(data)
        row.where = where
        return row

    def need(self, key: str) -> Any:
        """The value of ``key``; a missing or empty value raises :class:`InputError`."""
        value = self.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InputError(f"{self.where}: empty value in column {key!r}; every row needs one")
        return value


def read_text(path: str | os.PathLike) -> str:
    """A file's text as UTF-8 (a BOM is dropped). Undecodable bytes name the line."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-save the file as UTF-8"
        ) from exc


def _check_columns(path: Path, columns: Sequence[str], required: Iterable[str]) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        found = ", ".join(repr(c) for c in columns) or "none"
        raise InputError(
            f"{path}:1: missing column(s) {', '.join(repr(c) for c in missing)} (found {found}); "
            "the file must use the published column names"
        )


def read_delimited(
    path: str | os.PathLike, required: Iterable[str] = (), delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL
) -> list[Row]:
    """Rows of a CSV/TSV file with a header line. ``Row.where`` is ``file:line``."""
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise InputError(f"{path}: the file is empty; expected a header line and data rows")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise InputError(f"{path}:1: unreadable header ({exc})") from exc
    header = [h.strip() for h in header]
    _check_columns(path, header, required)
    rows: list[Row] = []
    start = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InputError(f"{path}:{start}: malformed row ({exc})") from exc
        line = start
        start = reader.line_num + 1
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) > len(header) and any(v.strip() for v in values[len(header) :]):
            raise InputError(
                f"{path}:{line}: {len(values)} fields but the header has {len(header)}; check the delimiter and quoting"
            )
        values = values + [""] * (len(header) - len(values))
        rows.append(Row.make(dict(zip(header, values)), f"{path}:{line}"))
    if not rows:
        raise InputError(f"{path}: no data rows after the header")
    return rows


def read_jsonl(path: str | os.PathLike, required: Iterable[str] = ()) -> list[Row]:
    """Rows of a JSON-lines file. ``Row.where`` is ``file:line``."""
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise InputError(f"{path}: the file is empty; expected one JSON object per line")
    rows: list[Row] = []
    required = list(required)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in required if k not in obj]
        if missing:
            raise InputError(f"{path}:{lineno}: missing key(s) {', '.join(repr(k) for k in missing)}")
        rows.append(Row.make(obj, f"{path}:{lineno}"))
    return rows


def read_json(path: str | os.PathLike) -> Any:
    """A JSON document."""
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise InputError(f"{path}: the file is empty; expected a JSON document")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno})") from exc


def read_json_records(path: str | os.PathLike, required: Iterable[str] = ()) -> list[Row]:
    """Rows of a JSON file holding a list of objects. ``Row.where`` is ``file: record N``."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    if not data:
        raise InputError(f"{path}: the list is empty")
    rows: list[Row] = []
    required = list(required)
    for i, obj in enumerate(data, start=1):
        where = f"{path}: record {i}"
        if not isinstance(obj, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in required if k not in obj]
        if missing:
            raise InputError(f"{where}: missing key(s) {', '.join(repr(k) for k in missing)}")
        rows.append(Row.make(obj, where))
    return rows


def read_parquet(path: str | os.PathLike, required: Iterable[str] = ()) -> list[Row]:
    """Rows of a parquet file. ``Row.where`` is ``file: row N`` (1-based)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise InputError(f"{path}: not a readable parquet file ({exc})") from exc
    _check_columns(path, table.column_names, required)
    records = table.to_pylist()
    if not records:
        raise InputError(f"{path}: no data rows")
    return [Row.make(r, f"{path}: row {i}") for i, r in enumerate(records, start=1)]


def read_records(
    path: str | os.PathLike,
    required: Iterable[str] = (),
    delimiter: str | None = None,
    quoting: int = csv.QUOTE_MINIMAL,
) -> list[Row]:
    """Rows of any supported table file, chosen by its suffix.

    ``.csv`` (comma), ``.tsv``/``.txt`` (tab unless ``delimiter`` says otherwise), ``.jsonl``,
    ``.json`` (a list of objects) and ``.parquet``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return read_parquet(path, required)
    if suffix == ".jsonl":
        return read_jsonl(path, required)
    if suffix == ".json":
        return read_json_records(path, required)
    if delimiter is None:
        delimiter = "\t" if suffix in (".tsv", ".txt") else ","
    return read_delimited(path, required, delimiter=delimiter, quoting=quoting)


def find_file(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` that exists in ``folder`` (or ``folder`` itself when it is one of them)."""
    if folder.is_file():
        return folder if folder.name in names else None
    for name in names:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None
