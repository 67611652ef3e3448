"""Parquet tables that carry their provenance.

Provenance is stored as JSON under the parquet key-value metadata key ``affalign``; every
write is atomic (see :mod:`affalign.io.files`). CSV copies for reading come from the one
CSV writer here, :func:`write_csv` (a missing value is an empty cell).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from affalign.io.files import atomic_write, atomic_write_text

PROVENANCE_KEY = b"affalign"
# The ``prompt_type`` of generations made without steering towards a group: written by the
# generate stage, read by every stage after it (steerability compares against it).
DEFAULT_PROMPT_TYPE = "default"


def write_table(frame: pl.DataFrame, path: str | Path, provenance: dict[str, Any]) -> None:
    """Write ``frame`` as parquet with ``provenance`` (JSON-serialisable) in its metadata."""
    table = frame.to_arrow()
    metadata = dict(table.schema.metadata or {})
    metadata[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(metadata)
    atomic_write(path, lambda temporary: pq.write_table(table, temporary))


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance dictionary stored in a parquet table (empty if it has none)."""
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def write_csv(frame: pl.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically, every missing value as an empty cell: a float column's NaN
    (an undefined score, mean or p-value) is written as a null is, never as ``NaN``."""
    floats = [name for name, dtype in frame.schema.items() if dtype.is_float()]
    if floats:
        frame = frame.with_columns(pl.col(floats).fill_nan(None))
    atomic_write_text(path, frame.write_csv())


def labels_of(affect_path: str | Path) -> list[str]:
    """The labels an affect file (the classify stage's output) records in its provenance."""
    labels = read_provenance(affect_path).get("labels")
    if not labels:
        raise ValueError(f"{affect_path} records no labels in its provenance")
    return list(labels)


def join_affect(
    posts: Sequence[str | Path], affect: Sequence[str | Path], columns: Sequence[str]
) -> pl.LazyFrame:
    """Posts (``columns`` of them) joined 1:1 with their affect rows on ``post_id``."""
    post_frame = pl.scan_parquet([str(p) for p in posts]).select(["post_id", *columns])
    affect_frame = pl.scan_parquet([str(a) for a in affect])
    return post_frame.join(affect_frame, on="post_id", how="inner", validate="1:1")
