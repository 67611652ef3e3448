"""How one issue's table maps onto posts: the source spec, its checks, and the reading and
matching of its fields.

Input tables (CSV, parquet, JSON lines) are read, never modified. Conventions:

* **Columns** are mapped through the config (``human.<issue>.columns``). A name that is
  not a column of the table is read as a dotted path into nested records (``user.id_str``,
  ``entities.urls``). ``text`` may be a list of candidates tried in order per row (the
  first one present, non-null and not blank wins), e.g. ``[extended_tweet.full_text,
  full_text, text]``. Integer post and user ids become strings.
* **URLs** (``columns.urls``) are a list of strings, a list of objects (the first of
  ``human.<issue>.url_fields`` present in each, expanded forms first), or a string of URLs
  separated by spaces, commas, semicolons or ``|`` (a JSON or Python list literal works).
* **Group values** from a column match the study's groups ignoring case and surrounding
  spaces (``Liberal `` is ``liberal``; a warning counts what was matched so). Any other value
  stops the job with the values found and their counts, unless
  ``human.<issue>.drop_unknown_groups`` is set: then those rows are left out with a warning.
* **Topic values** from a column match the study's topics the same way (with the same
  warning); rows with any other value (a topic the study leaves out) are left out with a
  warning that lists those values and their counts. There is no switch: a study of a
  subset of a table's topics is ordinary, so such rows are never an error.
* **Errors**: everything else that is wrong stops the job with the file, column and row
  named (rows are 1-based data rows: a CSV header is not a row, JSON lines count records).

The config check (:func:`check_source`, :func:`check_has_rows`) runs the same checks
before any job, so a bad table stops the run at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from affalign.io import TableError, table_has_rows

GROUP_SOURCES = ("column", "domains")
TOPIC_SOURCES = ("column", "keywords")
URL_TOKEN = r"[^\s,;|\[\]'\"]+"
# Distinct values named in a message about group values; the rest are counted.
LISTED_VALUES = 10


class HumanDataError(TableError):
    """A human post table that cannot be used as it is."""


@dataclass(frozen=True)
class SourceSpec:
    """How one issue's table maps onto the normalised fields (``human.<issue>`` in the config).

    ``columns`` maps each field the source needs (see :meth:`needed`) to its input column.
    ``drop_unknown_groups``: leave out rows whose group column holds a value that is not a
    group of the study (with a warning) instead of stopping.
    """

    columns: Mapping[str, str | Sequence[str]]
    group_from: str
    topic_from: str
    url_fields: tuple[str, ...]
    drop_unknown_groups: bool

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> SourceSpec:
        """From a schema-validated ``human.<issue>`` section (the schema fills its defaults)."""
        return cls(
            columns=dict(table["columns"]),
            group_from=table["group_from"],
            topic_from=table["topic_from"],
            url_fields=tuple(table["url_fields"]),
            drop_unknown_groups=table["drop_unknown_groups"],
        )

    def __post_init__(self) -> None:
        if self.group_from not in GROUP_SOURCES:
            raise ValueError(f"group_from must be one of {GROUP_SOURCES}, not {self.group_from!r}")
        if self.topic_from not in TOPIC_SOURCES:
            raise ValueError(f"topic_from must be one of {TOPIC_SOURCES}, not {self.topic_from!r}")

    def needed(self) -> list[str]:
        """The fields this source must provide, in checking order."""
        fields = ["post_id", "text"]
        if self.group_from == "column":
            fields.append("group")
        if self.topic_from == "column":
            fields.append("topic")
        if self.group_from == "domains" or "user" in self.columns:
            fields.append("user")
        if self.group_from == "domains":
            fields.append("urls")
        return fields

    def source(self, name: str) -> str | list[str]:
        """The input column (or dotted path; for ``text`` a list of candidates) of a field."""
        value = self.columns[name]
        if name == "text":
            return [value] if isinstance(value, str) else list(value)
        return str(value)


def resolve_path(schema: Mapping[str, pl.DataType], name: str) -> tuple[pl.Expr, pl.DataType] | None:
    """Expression and type of a column, or of a dotted path into struct columns; None if absent.

    A column whose name contains dots (a flattened export) wins over a nested path.
    """
    if name in schema:
        return pl.col(name), schema[name]
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head not in schema:
            continue
        expr, dtype = pl.col(head), schema[head]
        for part in parts[cut:]:
            inner = {f.name: f.dtype for f in dtype.fields} if isinstance(dtype, pl.Struct) else {}
            if part not in inner:
                break
            expr, dtype = expr.struct.field(part), inner[part]
        else:
            return expr, dtype
    return None


def _missing_hint(schema: Mapping[str, pl.DataType], name: str) -> str:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        found = resolve_path(schema, ".".join(parts[:cut]))
        if found is not None:
            dtype = found[1]
            inner = [f.name for f in dtype.fields] if isinstance(dtype, pl.Struct) else []
            return f"; {'.'.join(parts[:cut])!r} has fields {inner}"
    return f"; the table has {list(schema)}"


def _key(issue: str | None, name: str) -> str:
    return f"human.{issue or '<issue>'}.{name}"


def _check_dtype(
    path: str | Path, issue: str | None, name: str, source: str, dtype: pl.DataType, url_fields: Sequence[str]
) -> None:
    """Raise for a column whose type cannot hold the field."""
    if dtype == pl.Null:
        return
    if name in ("post_id", "user"):
        ok = dtype == pl.String or dtype.is_integer()
        wanted = "text or integers"
    elif name == "text":
        ok = dtype in (pl.String, pl.Binary)
        wanted = "text"
    elif name == "urls":
        inner = dtype.inner if isinstance(dtype, pl.List) else None
        ok = dtype == pl.String or inner in (pl.String, pl.Null) or isinstance(inner, pl.Struct)
        wanted = "a list of URLs (strings or objects) or a string of URLs"
        if ok and isinstance(inner, pl.Struct) and not {f.name for f in inner.fields} & set(url_fields):
            names = [f.name for f in inner.fields]
            raise HumanDataError(
                f"{path}: column {source!r} (urls) holds objects with fields {names}, "
                f"none of {list(url_fields)} (config key {_key(issue, 'url_fields')})"
            )
    else:
        ok = dtype == pl.String
        wanted = "text"
    if not ok:
        raise HumanDataError(f"{path}: column {source!r} ({name}) must hold {wanted}, found {dtype}")


def no_rows_error(path: str | Path, issue: str | None) -> HumanDataError:
    """The error for a table without a single post (a header alone, 0 rows, no records)."""
    return HumanDataError(
        f"{path}: the table has no posts (0 rows); config key {_key(issue, 'path')} must name a table "
        "with at least one post: check that the export finished (it may have been cut short) or fix "
        "the path"
    )


def check_has_rows(path: str | Path, issue: str | None = None) -> None:
    """Raise :func:`no_rows_error` for a table without rows, reading as little as possible."""
    if not table_has_rows(path):
        raise no_rows_error(path, issue)


def check_source(
    path: str | Path,
    schema: Mapping[str, pl.DataType],
    spec: SourceSpec,
    issue: str | None = None,
    *,
    nested: bool = True,
) -> None:
    """Check that every field ``spec`` needs is in ``schema`` with a usable type.

    With ``nested=False`` (a sample of JSON lines, whose records may leave fields out) only
    the top-level column of a dotted path must exist, and types are not checked.
    """
    available = list(schema)

    def present(name: str) -> tuple[pl.Expr, pl.DataType] | None:
        if nested:
            return resolve_path(schema, name)
        top = name if name in schema else name.split(".")[0]
        return (pl.col(top), pl.Null) if top in schema else None

    for name in spec.needed():
        if name in ("user", "urls") and name not in spec.columns:
            raise HumanDataError(
                f"{path}: group_from is 'domains' but config key {_key(issue, 'columns.' + name)} is not set"
            )
        sources = spec.source(name)
        candidates = sources if isinstance(sources, list) else [sources]
        found = [(source, present(source)) for source in candidates]
        found = [(source, hit) for source, hit in found if hit is not None]
        if not found:
            if len(candidates) == 1:
                raise HumanDataError(
                    f"{path}: column {candidates[0]!r} (for {name!r}, config key "
                    f"{_key(issue, 'columns.' + name)}) is missing{_missing_hint(schema, candidates[0])}"
                )
            raise HumanDataError(
                f"{path}: none of the columns {candidates} (for {name!r}, config key "
                f"{_key(issue, 'columns.' + name)}) exists; the table has {available}"
            )
        if nested:
            for source, (_, dtype) in found:
                _check_dtype(path, issue, name, source, dtype, spec.url_fields)


def _first_row(mask: pl.Series) -> int:
    # Row numbers are 1-based and count data rows (a CSV header is not a row).
    return int(mask.arg_true()[0]) + 1


def is_blank(series: pl.Series) -> pl.Series:
    if series.dtype == pl.Null:
        return pl.Series([True] * len(series))
    return (series.is_null() | (series.str.strip_chars() == "")).fill_null(True)


def _decode(path: str | Path, source: str, series: pl.Series) -> pl.Series:
    """Binary text as UTF-8, naming the first row that is not."""
    decoded = []
    for index, value in enumerate(series.to_list()):
        try:
            decoded.append(None if value is None else value.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise HumanDataError(
                f"{path}: column {source!r} (text) row {index + 1}: text is not valid UTF-8 ({error.reason} "
                f"at byte {error.start})"
            ) from None
    return pl.Series(decoded, dtype=pl.String)


def extract_fields(
    raw: pl.DataFrame, *, path: str | Path, spec: SourceSpec, issue: str | None = None
) -> pl.DataFrame:
    """The fields ``spec`` needs, validated, one row per input row.

    Columns: ``post_id``, ``text`` (null when missing) and, as needed, ``group``,
    ``topic``, ``user`` (strings) and ``urls`` (``list[str]``).
    """
    check_source(path, raw.schema, spec, issue)
    out: dict[str, pl.Series] = {}
    for name in spec.needed():
        sources = spec.source(name)
        if name == "text":
            texts = []
            for source in sources:
                resolved = resolve_path(raw.schema, source)
                if resolved is None:
                    continue
                series = raw.select(resolved[0]).to_series()
                if series.dtype == pl.Binary:
                    series = _decode(path, source, series)
                texts.append(series.cast(pl.String))
            frame = pl.DataFrame({f"c{i}": s for i, s in enumerate(texts)})
            usable = [pl.when(pl.col(c).str.strip_chars() != "").then(pl.col(c)) for c in frame.columns]
            out[name] = frame.select(pl.coalesce([*usable, *[pl.col(c) for c in frame.columns]])).to_series()
            continue
        resolved = resolve_path(raw.schema, sources)  # type: ignore[arg-type]
        assert resolved is not None  # check_source found it
        series = raw.select(resolved[0]).to_series()
        if name == "urls":
            out[name] = _url_lists(series, spec.url_fields)
            continue
        series = series.cast(pl.String)
        missing = is_blank(series)
        if missing.any():
            raise HumanDataError(f"{path}: column {sources!r} ({name}) is empty in row {_first_row(missing)}")
        out[name] = series
    fields = pl.DataFrame({name: series.rename(name) for name, series in out.items()})
    duplicated = fields["post_id"].is_duplicated()
    if duplicated.any():
        row = _first_row(duplicated)
        post_id = fields["post_id"][row - 1]
        again = int((fields["post_id"] == post_id).arg_true()[1]) + 1
        raise HumanDataError(
            f"{path}: post id {post_id!r} in row {row} is not unique "
            f"(column {spec.source('post_id')!r}; again in row {again})"
        )
    return fields


def _url_lists(series: pl.Series, url_fields: Sequence[str]) -> pl.Series:
    """Any supported URL column as ``list[str]`` (missing → empty list)."""
    frame = pl.DataFrame({"u": series})
    dtype = series.dtype
    column = pl.col("u")
    if dtype == pl.Null or (isinstance(dtype, pl.List) and dtype.inner == pl.Null):
        return pl.Series([[] for _ in range(len(series))], dtype=pl.List(pl.String))
    if dtype == pl.String:
        lists = frame.select(column.str.extract_all(URL_TOKEN))
    elif isinstance(dtype.inner, pl.Struct):
        present = [name for name in url_fields if name in {f.name for f in dtype.inner.fields}]
        values = [pl.element().struct.field(name).cast(pl.String) for name in present]
        usable = pl.coalesce([pl.when(value.str.strip_chars() != "").then(value) for value in values])
        lists = frame.select(column.list.eval(usable))
    else:
        lists = frame.select(column)
    return lists.to_series().fill_null(pl.lit([], pl.List(pl.String))).cast(pl.List(pl.String))


def _value_counts(values: pl.Series) -> str:
    """'value' (n rows), ... for the most frequent values, then how many more there are."""
    counts = (
        values.rename("value").value_counts(name="rows").sort(["rows", "value"], descending=[True, False])
    )
    listed = [
        f"{value!r} ({rows} row{'s' if rows != 1 else ''})"
        for value, rows in counts.head(LISTED_VALUES).rows()
    ]
    more = counts.height - LISTED_VALUES
    return ", ".join(listed) + (f" and {more} more values" if more > 0 else "")


def _match_folded(
    values: pl.Series, names: Sequence[str], *, issue: str | None, source: str, field: str
) -> tuple[pl.Series, pl.Series, list[str]]:
    """Column values as the study's ``names`` (groups or topics), ignoring case and
    surrounding spaces: the names (null where none matches), the mask of rows that match
    none, and a warning counting the values matched only after folding, if any."""
    by_folded = {name.strip().casefold(): name for name in names}
    folded = values.str.strip_chars().str.to_lowercase()
    matched = folded.replace_strict(by_folded, default=None, return_dtype=pl.String)
    unknown = matched.is_null()
    warnings = []
    changed = ~unknown & (matched != values)
    if changed.any():
        pairs = pl.DataFrame({"value": values, "name": matched}).filter(changed)
        folds = ", ".join(
            f"{value!r} -> {name} ({rows} row{'s' if rows != 1 else ''})"
            for value, name, rows in pairs.group_by("value", "name")
            .len()
            .sort(["len", "value"], descending=[True, False])
            .rows()
        )
        warnings.append(
            f"issue {issue!r}: {int(changed.sum())} rows of column {source!r} ({field}) were matched to "
            f"the study's {field}s ignoring case and spaces: {folds}"
        )
    return matched, unknown, warnings


def match_groups(
    values: pl.Series,
    groups: Sequence[str],
    *,
    path: str | Path,
    issue: str | None,
    source: str,
    drop_unknown: bool,
) -> tuple[pl.Series, pl.Series, list[str]]:
    """Group column values as the study's groups, ignoring case and surrounding spaces.

    Returns the groups (a value that matches no group is kept as it is), the mask of rows
    whose value matches no group, and the warnings: one counting the values matched only
    after folding case or spaces, and (with ``drop_unknown``) one counting the rows left
    out. Without ``drop_unknown`` a value that matches no group raises
    :class:`HumanDataError` listing those values and their counts.
    """
    matched, unknown, warnings = _match_folded(values, groups, issue=issue, source=source, field="group")
    if unknown.any():
        found = _value_counts(values.filter(unknown))
        if not drop_unknown:
            raise HumanDataError(
                f"{path}: column {source!r} (group) holds values that are not groups of the study "
                f"{list(groups)} (even ignoring case and spaces): {found}; fix them in the table (or "
                f"map them with a column of your own), or set config key "
                f"{_key(issue, 'drop_unknown_groups')}: true to leave those rows out"
            )
        warnings.append(
            f"issue {issue!r}: {int(unknown.sum())} rows left out because column {source!r} (group) "
            f"holds values that are not groups of the study ({_key(issue, 'drop_unknown_groups')}): "
            f"{found}"
        )
    return matched.fill_null(values), unknown, warnings


def match_topics(
    values: pl.Series, topics: Sequence[str], *, issue: str | None, source: str
) -> tuple[pl.Series, pl.Series, list[str]]:
    """Topic column values as the study's topics, ignoring case and surrounding spaces.

    Returns the topics (a value that matches no topic is kept as it is), the mask of rows
    whose value matches no topic (they are left out), and the warnings: one counting the
    values matched only after folding case or spaces, and one listing the values that
    match no topic with their counts.
    """
    matched, unknown, warnings = _match_folded(values, topics, issue=issue, source=source, field="topic")
    if unknown.any():
        warnings.append(
            f"issue {issue!r}: {int(unknown.sum())} rows of column {source!r} (topic) hold values that "
            f"are not topics of the study (issues.{issue or '<issue>'}.topics) and are left out: "
            f"{_value_counts(values.filter(unknown))}"
        )
    return matched.fill_null(values), unknown, warnings
