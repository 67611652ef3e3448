"""Reading input tables: CSV (every column as text), parquet, JSON lines.

One reader for every table a user supplies (human posts, domain-bias tables, surveys).
A file that cannot be read gives a :class:`TableError` that names the file and, for text
that is not UTF-8, the column and row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".jsonl": "ndjson", ".ndjson": "ndjson", ".json": "ndjson"}


class TableError(ValueError):
    """An input table cannot be read or does not hold what the study needs.

    The class of the user's data errors (subclassed per kind of table): its message names
    the file and what to fix, so a job reports it in one line, without a traceback
    (:func:`affalign.io.run_logged`).
    """


def table_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise TableError(f"{path}: unsupported table format {suffix!r}; use one of {sorted(SUFFIXES)}")
    return SUFFIXES[suffix]


def table_schema(path: str | Path, sample_rows: int = 1000) -> pl.Schema:
    """The schema of a table, read from its header (CSV: every column is text), its
    parquet schema, or the first ``sample_rows`` records of JSON lines."""
    fmt = table_format(path)
    try:
        if fmt == "csv":
            return pl.scan_csv(path, infer_schema=False).collect_schema()
        if fmt == "parquet":
            return pl.scan_parquet(path).collect_schema()
        return pl.scan_ndjson(path, infer_schema_length=sample_rows).collect_schema()
    except (pl.exceptions.PolarsError, OSError) as error:
        raise TableError(f"{path}: cannot read the table ({_undecodable(path, fmt) or error})") from error


def table_has_rows(path: str | Path) -> bool:
    """Whether a table holds at least one data row (a CSV header is not a row), read
    cheaply: parquet from its metadata, CSV from its first row, JSON lines up to the
    first record."""
    fmt = table_format(path)
    try:
        if fmt == "ndjson":
            with open(path, "rb") as lines:
                return any(line.strip() for line in lines)
        if Path(path).stat().st_size == 0:
            return False
        if fmt == "csv":
            return pl.scan_csv(path, infer_schema=False).head(1).collect().height > 0
        return pl.scan_parquet(path).select(pl.len()).collect().item() > 0
    except (pl.exceptions.PolarsError, OSError) as error:
        raise TableError(f"{path}: cannot read the table ({_undecodable(path, fmt) or error})") from error


def column_names(path: str | Path) -> list[str]:
    """The columns of a table, read from its header or schema only."""
    return table_schema(path, sample_rows=100).names()


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a whole table; JSON lines with the schema inferred from every record."""
    fmt = table_format(path)
    try:
        if fmt == "csv":
            return pl.read_csv(path, infer_schema=False, encoding="utf8")
        if fmt == "parquet":
            return pl.read_parquet(path)
        return pl.read_ndjson(path, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as error:
        raise TableError(f"{path}: cannot read the table ({_undecodable(path, fmt) or error})") from error


def _undecodable(path: str | Path, fmt: str) -> str | None:
    """Where a CSV or JSON-lines file is not UTF-8, as 'column ... row ...', or None."""
    if fmt == "parquet":
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError as error:
        position = error.start
    detail = f"text is not valid UTF-8 (byte 0x{data[position]:02x} at offset {position}); save it as UTF-8"
    if fmt == "ndjson":
        start = data.rfind(b"\n", 0, position) + 1
        record = sum(1 for line in data[:start].split(b"\n") if line.strip()) + 1
        end = data.find(b"\n", position)
        line = data[start : end if end >= 0 else len(data)]
        column = _replaced_field(line.decode("utf-8", errors="replace"))
        where = f"column {column!r} row {record}" if column else f"row {record}"
        return f"{where}: {detail}"
    try:
        lossy = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    except pl.exceptions.PolarsError:
        return detail
    hits = [
        (int(mask.arg_true()[0]) + 1, index, column)
        for index, column in enumerate(lossy.columns)
        if (mask := lossy[column].str.contains("\ufffd", literal=True).fill_null(False)).any()
    ]
    if not hits:
        return detail
    row, _, column = min(hits)
    return f"column {column!r} row {row}: {detail}"


def _replaced_field(line: str) -> str | None:
    """The dotted path of the first string holding U+FFFD in one JSON record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None

    def walk(value: Any, prefix: str) -> str | None:
        if isinstance(value, str):
            return prefix if "\ufffd" in value else None
        if isinstance(value, dict):
            for key, item in value.items():
                found = walk(item, f"{prefix}.{key}" if prefix else key)
                if found:
                    return found
        if isinstance(value, list):
            for item in value:
                found = walk(item, prefix)
                if found:
                    return found
        return None

    return walk(record, "")
