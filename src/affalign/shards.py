"""Reading and writing shards: parquet files that carry their provenance.

Provenance is stored as JSON under the parquet key-value metadata key ``affalign`` and
every write is atomic (a temporary file in the target directory, then ``os.replace``),
so a reader never sees half a shard and a failed job never leaves one behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from affalign.atomic import atomic_write_text

PROVENANCE_KEY = b"affalign"


def write_shard(frame: pl.DataFrame, path: str | Path, provenance: dict[str, Any]) -> None:
    """Write ``frame`` as parquet with ``provenance`` (JSON-serialisable) in its metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = frame.to_arrow()
    metadata = dict(table.schema.metadata or {})
    metadata[PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True, default=str).encode()
    table = table.replace_schema_metadata(metadata)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance dictionary stored in a shard (empty if it has none)."""
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def write_csv(frame: pl.DataFrame, path: str | Path) -> None:
    """Write a CSV atomically."""
    atomic_write_text(path, frame.write_csv())
