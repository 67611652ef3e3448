"""Ingest human posts into one normalised table per issue.

Input tables (CSV, parquet, JSON lines) are read, never modified. The normalised table
has the columns ``post_id``, ``issue``, ``topic``, ``group``, ``text`` (all strings).
Rows whose group or topic the study does not use are left out and counted; everything
else that is wrong stops the job with the file, column and row named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

FIELDS = ("post_id", "text", "group", "topic")
NORMALISED_SCHEMA = {
    "post_id": pl.String,
    "issue": pl.String,
    "topic": pl.String,
    "group": pl.String,
    "text": pl.String,
}
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".jsonl": "ndjson", ".ndjson": "ndjson", ".json": "ndjson"}


class HumanDataError(ValueError):
    """A human post table that cannot be used as it is."""


def table_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise HumanDataError(f"{path}: unsupported table format {suffix!r}; use one of {sorted(SUFFIXES)}")
    return SUFFIXES[suffix]


def column_names(path: str | Path) -> list[str]:
    """The columns of a table, read from its header or schema only."""
    fmt = table_format(path)
    try:
        if fmt == "csv":
            return pl.scan_csv(path, infer_schema=False).collect_schema().names()
        if fmt == "parquet":
            return pl.scan_parquet(path).collect_schema().names()
        return pl.scan_ndjson(path, infer_schema_length=100).collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as error:
        raise HumanDataError(f"{path}: cannot read the table ({error})") from error


def read_table(path: str | Path) -> pl.DataFrame:
    fmt = table_format(path)
    try:
        if fmt == "csv":
            return pl.read_csv(path, infer_schema=False, encoding="utf8")
        if fmt == "parquet":
            return pl.read_parquet(path)
        return pl.read_ndjson(path)
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as error:
        raise HumanDataError(f"{path}: cannot read the table ({error})") from error


def check_columns(path: str | Path, available: Sequence[str], columns: Mapping[str, str]) -> None:
    for field in FIELDS:
        source = columns.get(field, field)
        if source not in available:
            raise HumanDataError(
                f"{path}: column {source!r} (for {field!r}, config key human.<issue>.columns.{field}) "
                f"is missing; the table has {list(available)}"
            )


def _first_row(mask: pl.Series) -> int:
    # Row numbers are 1-based and count data rows (a CSV header is not a row).
    return int(mask.arg_true()[0]) + 1


def normalise_posts(
    raw: pl.DataFrame,
    *,
    path: str | Path,
    issue: str,
    columns: Mapping[str, str],
    topics: Sequence[str],
    groups: Sequence[str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate and normalise one issue's posts.

    Returns the normalised table (sorted by ``post_id``) and a table of rows left out,
    with the reason and count.
    """
    check_columns(path, raw.columns, columns)
    renamed = raw.select([pl.col(columns.get(field, field)).alias(field) for field in FIELDS])
    for field in FIELDS:
        dtype = renamed.schema[field]
        if dtype not in (pl.String, pl.Utf8) and not (field == "post_id" and dtype.is_integer()):
            raise HumanDataError(
                f"{path}: column {columns.get(field, field)!r} ({field}) must hold text, found {dtype}"
            )
    renamed = renamed.with_columns(pl.col("post_id").cast(pl.String))
    for field in FIELDS:
        missing = renamed[field].is_null() | (renamed[field].str.strip_chars() == "")
        if field != "text" and missing.any():
            row = _first_row(missing)
            source = columns.get(field, field)
            raise HumanDataError(f"{path}: column {source!r} ({field}) is empty in row {row}")
    duplicated = renamed["post_id"].is_duplicated()
    if duplicated.any():
        row = _first_row(duplicated)
        raise HumanDataError(
            f"{path}: post id {renamed['post_id'][row - 1]!r} in row {row} is not unique "
            f"(column {columns.get('post_id', 'post_id')!r})"
        )
    decoded = renamed.with_columns(pl.col("text").fill_null(""))
    unknown_group = ~decoded["group"].is_in(list(groups))
    unknown_topic = ~decoded["topic"].is_in(list(topics))
    empty_text = decoded["text"].str.strip_chars() == ""
    dropped = pl.DataFrame(
        {
            "issue": [issue] * 3,
            "reason": ["group not in study", "topic not in study", "empty text"],
            "rows": [
                int(unknown_group.sum()),
                int((unknown_topic & ~unknown_group).sum()),
                int((empty_text & ~unknown_topic & ~unknown_group).sum()),
            ],
        }
    )
    kept = decoded.filter(~unknown_group & ~unknown_topic & ~empty_text)
    counts = kept.group_by(["topic", "group"]).len()
    for topic in topics:
        for group in groups:
            present = counts.filter((pl.col("topic") == topic) & (pl.col("group") == group))
            if present.is_empty():
                raise HumanDataError(
                    f"{path}: topic {topic!r} has no posts from group {group!r}; every configured topic "
                    f"(config key issues.{issue}.topics) needs posts from every group"
                )
    normalised = (
        kept.with_columns(pl.lit(issue).alias("issue"))
        .select(list(NORMALISED_SCHEMA))
        .cast(NORMALISED_SCHEMA)
        .sort("post_id")
    )
    return normalised, dropped
