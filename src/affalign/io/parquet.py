"""Parquet tables that carry their provenance.

Provenance is stored as JSON under the parquet key-value metadata key ``affalign``; every
write is atomic (see :mod:`affalign.io.files`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from affalign.io.files import atomic_write, atomic_write_text

PROVENANCE_KEY = b"affalign"


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
    """Write a CSV atomically."""
    atomic_write_text(path, frame.write_csv())
