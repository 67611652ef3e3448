"""Ingest human posts into one normalised table per issue.

Input tables (CSV, parquet, JSON lines) are read, never modified. The normalised table
has the columns ``post_id``, ``issue``, ``topic``, ``group``, ``text`` (all strings).

Conventions:

* **Columns** are mapped through the config (``human.<issue>.columns``). A name that is
  not a column of the table is read as a dotted path into nested records (``user.id_str``,
  ``entities.urls``). ``text`` may be a list of candidates tried in order per row (the
  first one present, non-null and not blank wins), e.g. ``[extended_tweet.full_text,
  full_text, text]``. Integer post and user ids become strings.
* **URLs** (``columns.urls``) are a list of strings, a list of objects (the first of
  ``human.<issue>.url_fields`` present in each, expanded forms first), or a string of URLs
  separated by spaces, commas, semicolons or ``|`` (a JSON or Python list literal works).
* **Groups** come from a column (``group_from: column``) or from the news domains users
  share (``group_from: domains``, see :mod:`affalign.human.ideology`). **Topics** come from a
  column (``topic_from: column``) or from keywords (``topic_from: keywords``, see
  :mod:`affalign.human.topics`). A post placed in several topics (policy ``all``) appears once
  per topic with post id ``<post_id>@<topic>``.
* **Group values** from a column match the study's groups ignoring case and surrounding
  spaces (``Liberal `` is ``liberal``; a warning counts what was matched so). Any other value
  stops the job with the values found and their counts, unless
  ``human.<issue>.drop_unknown_groups`` is set: then those rows are left out with a warning.
* **Topic values** from a column match the study's topics the same way (with the same
  warning); rows with any other value (a topic the study leaves out) are left out with a
  warning that lists those values and their counts. There is no switch: a study of a
  subset of a table's topics is ordinary, so such rows are never an error.
* **Rows left out** are counted per reason, each row under its first reason in this order:
  the group (not in the study / the user's ideology), the topic column (not in the study),
  empty text, the keywords (no topic / several topics). Then topics with fewer than
  ``topic_assignment.min_posts_per_group`` posts from a group are excluded from alignment
  (their posts are counted under ``topic below minimum posts``, once per topic).
* **Errors**: everything else that is wrong stops the job with the file, column and row
  named (rows are 1-based data rows: a CSV header is not a row, JSON lines count records).
* **Settings** come from the config after schema validation, which fills in every default
  (``workflow/schemas/config.schema.yaml`` is the one place they are written); nothing here
  supplies a default of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from affalign.human.ideology import (
    REASON_BETWEEN,
    REASON_FEW_URLS,
    USER_SCHEMA,
    IdeologySettings,
    domain_table_options,
    read_domain_table,
    url_shares,
    user_ideology,
)
from affalign.human.topics import MULTIPLE_TOPIC_POLICIES, assign_topics
from affalign.io import (
    TableError,
    atomic_write_text,
    file_sha256,
    print_job_warning,
    read_table,
    table_has_rows,
    write_csv,
    write_table,
)

FIELDS = ("post_id", "text", "group", "topic")
NORMALISED_SCHEMA = {
    "post_id": pl.String,
    "issue": pl.String,
    "topic": pl.String,
    "group": pl.String,
    "text": pl.String,
}
GROUP_SOURCES = ("column", "domains")
TOPIC_SOURCES = ("column", "keywords")
URL_TOKEN = r"[^\s,;|\[\]'\"]+"
MULTI_TOPIC_SEPARATOR = "@"

REASON_GROUP = "group not in study"
REASON_TOPIC = "topic not in study"
REASON_EMPTY = "empty text"
REASON_NO_KEYWORD = "no topic keyword"
REASON_SEVERAL = "several topics"
REASON_EXCLUDED = "topic below minimum posts"
# Distinct values named in a message about group values; the rest are counted.
LISTED_VALUES = 10
# Row numbers named in a warning about rows left out; the rest are counted.
LISTED_ROWS = 10

USERS_SCHEMA = {"issue": pl.String, **USER_SCHEMA}
QUALITY_SCHEMA = {
    "issue": pl.String,
    "topic": pl.String,
    "group": pl.String,
    "posts": pl.Int64,
    "users": pl.Int64,
    "status": pl.String,
    "reason": pl.String,
}


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


def _blank(series: pl.Series) -> pl.Series:
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
        missing = _blank(series)
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


@dataclass
class IngestResult:
    """One issue's posts and what the ingest found out about them."""

    posts: pl.DataFrame
    dropped: pl.DataFrame
    users: pl.DataFrame
    quality: pl.DataFrame
    excluded: dict[str, str]
    warnings: list[str]
    shares: pl.DataFrame | None = None


def ingest_posts(
    raw: pl.DataFrame,
    *,
    path: str | Path,
    issue: str,
    spec: SourceSpec,
    topics: Mapping[str, Sequence[str]] | Sequence[str],
    groups: Sequence[str],
    multiple_topics: str | None,
    min_posts_per_group: int,
    domain_scores: Mapping[str, float] | None = None,
    ideology: IdeologySettings | None = None,
) -> IngestResult:
    """Validate, assign groups and topics, and normalise one issue's posts.

    ``topics`` maps topic slugs (in config order) to their keywords; a plain sequence of
    slugs is enough when topics come from a column. ``multiple_topics`` is the policy for
    posts matching several topics' keywords (None when topics come from a column). With
    ``min_posts_per_group`` 0, a topic without posts from a group is an error; above 0, a
    topic with fewer posts than that from any group is excluded (left out of ``posts``,
    listed in ``excluded`` and ``warnings``). A group without any posts in the issue is
    always an error. ``domain_scores`` and ``ideology`` are needed when groups come from
    domains.
    """
    topic_names = list(topics)
    if spec.topic_from == "keywords":
        if not isinstance(topics, Mapping):
            raise ValueError("topics from keywords need a mapping of topic -> keywords")
        if multiple_topics not in MULTIPLE_TOPIC_POLICIES:
            raise ValueError(
                f"multiple_topics must be one of {MULTIPLE_TOPIC_POLICIES}, not {multiple_topics!r}"
            )
    if raw.height == 0:
        raise no_rows_error(path, issue)
    fields = extract_fields(raw, path=path, spec=spec, issue=issue)
    has_users = "user" in fields.columns
    reasons: list[tuple[str, pl.Series]] = []
    warnings: list[str] = []
    shares = None

    if spec.group_from == "domains":
        if domain_scores is None or ideology is None:
            raise ValueError("group_from 'domains' needs the domain scores and the ideology settings")
        shares = url_shares(fields.select("user", "urls"), domain_scores)
        per_user = user_ideology(fields.select("user"), shares, ideology)
        joined = fields.select("user").join(per_user, on="user", how="left", maintain_order="left")
        group = joined["group"]
        # The user's reason, word for word, is the reason their posts are left out.
        reasons.append((REASON_FEW_URLS, joined["reason"] == REASON_FEW_URLS))
        reasons.append((REASON_BETWEEN, joined["reason"] == REASON_BETWEEN))
        users = per_user
    else:
        group, unknown, group_warnings = match_groups(
            fields["group"],
            groups,
            path=path,
            issue=issue,
            source=str(spec.source("group")),
            drop_unknown=spec.drop_unknown_groups,
        )
        warnings += group_warnings
        fields = fields.with_columns(group.alias("group"))
        reasons.append((REASON_GROUP, unknown))
        users = _users_from_column(fields) if has_users else None

    empty_text = _blank(fields["text"])
    if spec.topic_from == "column":
        topic, unknown_topic, topic_value_warnings = match_topics(
            fields["topic"], topic_names, issue=issue, source=str(spec.source("topic"))
        )
        warnings += topic_value_warnings
        fields = fields.with_columns(topic.alias("topic"))
        topic_lists = fields.select(pl.concat_list(pl.col("topic")).alias("t"))["t"]
        reasons.append((REASON_TOPIC, unknown_topic))
        reasons.append((REASON_EMPTY, empty_text))
    else:
        assignment = assign_topics(fields["text"], topics, multiple_topics)  # type: ignore[arg-type]
        topic_lists = assignment["assigned"]
        reasons.append((REASON_EMPTY, empty_text))
        reasons.append((REASON_NO_KEYWORD, assignment["matched"].list.len() == 0))
        if multiple_topics == "drop":
            reasons.append((REASON_SEVERAL, assignment["assigned"].list.len() == 0))

    remaining = pl.Series([True] * fields.height)
    counts: dict[str, int] = {}
    for reason, mask in reasons:
        hit = mask.fill_null(False) & remaining
        counts[reason] = counts.get(reason, 0) + int(hit.sum())
        remaining = remaining & ~hit
        if reason == REASON_EMPTY and hit.any():
            warnings.append(_empty_text_warning(hit, issue=issue, source=spec.source("text")))

    kept = (
        fields.drop("group", "topic", strict=False)
        .with_columns(group.alias("group"), topic_lists.alias("topics"))
        .filter(remaining)
        .with_columns(pl.col("topics").list.len().alias("n_topics"))
        .explode("topics")
        .rename({"topics": "topic"})
        .with_columns(
            pl.when(pl.col("n_topics") > 1)
            .then(pl.col("post_id") + MULTI_TOPIC_SEPARATOR + pl.col("topic"))
            .otherwise(pl.col("post_id"))
            .alias("post_id")
        )
    )
    if kept["post_id"].is_duplicated().any():
        clash = kept.filter(pl.col("post_id").is_duplicated())["post_id"][0]
        raise HumanDataError(
            f"{path}: post id {clash!r} of a post placed in several topics clashes with another post id "
            f"(column {spec.source('post_id')!r}); use topic_assignment.multiple_topics first or drop"
        )

    quality, excluded, topic_warnings = _topic_quality(
        kept,
        path=path,
        issue=issue,
        topics=topic_names,
        groups=groups,
        minimum=min_posts_per_group,
        has_users=has_users,
        users=users,
    )
    if min_posts_per_group > 0:
        counts[REASON_EXCLUDED] = int(kept["topic"].is_in(list(excluded)).sum())
    dropped = pl.DataFrame(
        {"issue": [issue] * len(counts), "reason": list(counts), "rows": list(counts.values())},
        schema={"issue": pl.String, "reason": pl.String, "rows": pl.Int64},
    )
    posts = (
        kept.filter(~pl.col("topic").is_in(list(excluded)))
        .with_columns(pl.lit(issue).alias("issue"))
        .select(list(NORMALISED_SCHEMA))
        .cast(NORMALISED_SCHEMA)
        .sort("post_id")
    )
    if users is None:
        users_table = pl.DataFrame(schema=USERS_SCHEMA)
    else:
        users_table = users.with_columns(pl.lit(issue).alias("issue"))
        users_table = users_table.select(list(USERS_SCHEMA)).cast(USERS_SCHEMA)
    return IngestResult(
        posts=posts,
        dropped=dropped,
        users=users_table,
        quality=quality,
        excluded=excluded,
        warnings=warnings + topic_warnings,
        shares=shares,
    )


def _empty_text_warning(empty: pl.Series, *, issue: str, source: str | list[str]) -> str:
    """The rows left out for an empty text, by row number (1-based data rows, as in the
    errors): the first :data:`LISTED_ROWS`, then how many more."""
    rows = (empty.arg_true() + 1).to_list()
    listed = ", ".join(str(row) for row in rows[:LISTED_ROWS])
    more = len(rows) - LISTED_ROWS
    sources = [source] if isinstance(source, str) else list(source)
    where = f"column {sources[0]!r} (text) is" if len(sources) == 1 else f"columns {sources} (text) are all"
    return (
        f"issue {issue!r}: {len(rows)} row{'s' if len(rows) != 1 else ''} left out because {where} "
        f"empty: row{'s' if len(rows) != 1 else ''} {listed}"
        + (f" and {more} more" if more > 0 else "")
        + " (counted in dropped.csv as 'empty text')"
    )


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


def _users_from_column(fields: pl.DataFrame) -> pl.DataFrame:
    """Per-user posts and group when groups come from a column (no URL scores)."""
    return (
        fields.group_by("user")
        .agg(pl.len().cast(pl.Int64).alias("posts"), pl.col("group").unique().alias("groups"))
        .with_columns(
            pl.when(pl.col("groups").list.len() == 1).then(pl.col("groups").list.first()).alias("group"),
            pl.when(pl.col("groups").list.len() > 1).then(pl.lit("posts in several groups")).alias("reason"),
            pl.lit(None, pl.Int64).alias("urls"),
            pl.lit(None, pl.Int64).alias("scored_urls"),
            pl.lit(None, pl.Float64).alias("score"),
        )
        .drop("groups")
        .sort("user")
    )


def _topic_quality(
    kept: pl.DataFrame,
    *,
    path: str | Path,
    issue: str,
    topics: Sequence[str],
    groups: Sequence[str],
    minimum: int,
    has_users: bool,
    users: pl.DataFrame | None,
) -> tuple[pl.DataFrame, dict[str, str], list[str]]:
    """Posts and users per topic × group, the topics to exclude, and the warnings."""
    for group in groups:
        if kept.filter(pl.col("group") == group).is_empty():
            hint = ""
            scored = users is not None and users["scored_urls"].is_not_null().any()
            if scored:
                summary = users.group_by(pl.col("group").fill_null(pl.col("reason"))).len().sort("group")
                hint = (
                    "; users: "
                    + ", ".join(f"{row['group']}: {row['len']}" for row in summary.iter_rows(named=True))
                    + " (see ideology.liberal_max, conservative_min, min_scored_urls)"
                )
            raise HumanDataError(f"{path}: no posts from group {group!r} are left in issue {issue!r}{hint}")
    aggregations = [pl.len().cast(pl.Int64).alias("posts")]
    if has_users:
        aggregations.append(pl.col("user").n_unique().cast(pl.Int64).alias("users"))
    counted = kept.group_by(["topic", "group"]).agg(aggregations)
    grid = pl.DataFrame(
        {"topic": [t for t in topics for _ in groups], "group": [g for _ in topics for g in groups]},
        schema={"topic": pl.String, "group": pl.String},
    )
    table = grid.join(counted, on=["topic", "group"], how="left", maintain_order="left").with_columns(
        pl.col("posts").fill_null(0)
    )
    if has_users:
        table = table.with_columns(pl.col("users").fill_null(0))
    else:
        table = table.with_columns(pl.lit(None, pl.Int64).alias("users"))
    excluded: dict[str, str] = {}
    warnings: list[str] = []
    for topic in topics:
        cells = table.filter(pl.col("topic") == topic)
        rows = cells.iter_rows(named=True)
        short = [(row["group"], row["posts"]) for row in rows if row["posts"] < max(minimum, 1)]
        if not short:
            continue
        if minimum <= 0:
            group = short[0][0]
            raise HumanDataError(
                f"{path}: topic {topic!r} has no posts from group {group!r}; every configured topic "
                f"(config key issues.{issue}.topics) needs posts from every group, unless "
                f"topic_assignment.min_posts_per_group is set to exclude such topics"
            )
        excluded[topic] = ", ".join(f"{group} has {n} posts" for group, n in short) + f" (minimum {minimum})"
        warnings.append(
            f"issue {issue!r}: topic {topic!r} excluded from alignment: {excluded[topic]}, "
            f"topic_assignment.min_posts_per_group"
        )
    if excluded and len(excluded) == len(topics):
        raise HumanDataError(
            f"{path}: every topic of issue {issue!r} has fewer than {minimum} posts from a group "
            f"(topic_assignment.min_posts_per_group): {excluded}"
        )
    quality = table.with_columns(
        pl.lit(issue).alias("issue"),
        pl.when(pl.col("topic").is_in(list(excluded)))
        .then(pl.lit("excluded"))
        .otherwise(pl.lit("kept"))
        .alias("status"),
        pl.col("topic").replace_strict(excluded, default=None, return_dtype=pl.String).alias("reason"),
    )
    return quality.select(list(QUALITY_SCHEMA)).cast(QUALITY_SCHEMA), excluded, warnings


def _markdown_table(frame: pl.DataFrame) -> list[str]:
    if frame.is_empty():
        return ["(none)"]
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in frame.iter_rows()]
    return [header, rule, *body]


def quality_report(result: IngestResult, *, issue: str, source: str, settings: Mapping[str, Any]) -> str:
    """A Markdown summary: posts per topic × group, exclusions, rows left out, users, URLs."""
    lines = [f"# Human posts: {issue}", "", f"Source: `{source}`", ""]
    lines += [f"* {key}: `{json.dumps(value, sort_keys=True)}`" for key, value in settings.items()]
    wide = result.quality.pivot(on="group", index=["topic", "status"], values="posts")
    lines += ["", "## Posts per topic and group", "", *_markdown_table(wide)]
    lines += ["", "## Topics excluded from alignment", ""]
    lines += [f"* `{topic}`: {why}" for topic, why in result.excluded.items()] or ["(none)"]
    lines += ["", "## Rows left out", "", *_markdown_table(result.dropped.select("reason", "rows"))]
    lines += ["", "## Users per group", ""]
    if result.users.is_empty():
        lines.append("(no user column)")
    else:
        users = (
            result.users.group_by(pl.col("group").fill_null("(none)"), pl.col("reason"))
            .agg(pl.len().alias("users"), pl.col("posts").sum().alias("posts"))
            .sort("group", "reason", nulls_last=True)
        )
        lines += ["All users of the table (posts: all their rows).", "", *_markdown_table(users)]
    if result.shares is not None:
        shares = result.shares
        scored = shares["score"].is_not_null().sum()
        lines += ["", "## URLs", "", f"{shares.height} URL shares, {scored} scored by the domain table."]
        unscored = (
            shares.filter(pl.col("score").is_null() & pl.col("domain").is_not_null())
            .group_by("domain")
            .len()
            .sort(["len", "domain"], descending=[True, False])
            .head(10)
            .rename({"len": "shares"})
        )
        lines += ["", "Most shared unscored domains:", "", *_markdown_table(unscored)]
    return "\n".join(lines) + "\n"


def run_ingest(
    *,
    issue: str,
    table: str,
    outputs: Mapping[str, str],
    source: Mapping[str, Any],
    topics: Sequence[str],
    keywords: Mapping[str, Sequence[str]],
    groups: Sequence[str],
    topic_assignment: Mapping[str, Any],
    ideology: Mapping[str, Any],
    domain_table: str | None,
) -> IngestResult:
    """Ingest one issue's ``table`` and write the five ``outputs`` (rule ``ingest_human``).

    ``outputs`` has the paths ``posts`` (parquet with provenance), ``dropped``, ``users``,
    ``quality`` (CSV) and ``report`` (Markdown). ``source`` is the schema-validated
    ``human.<issue>`` section without its path; ``keywords`` (topic -> keywords) is read when
    topics come from keywords, ``topics`` (slugs) otherwise; ``topic_assignment`` has
    ``min_posts_per_group`` and, with keywords, ``multiple_topics``; ``ideology`` (the
    validated section) and ``domain_table`` are read when groups come from domains.
    Warnings go to stdout (the job's log) and to the console.
    """
    spec = SourceSpec.from_config(source)
    assignment = dict(topic_assignment)
    settings: dict[str, Any] = {
        "columns": dict(spec.columns),
        "group_from": spec.group_from,
        "topic_from": spec.topic_from,
        "topic_assignment": assignment,
    }
    if spec.group_from == "column":
        settings["drop_unknown_groups"] = spec.drop_unknown_groups
    scores, ideology_settings = None, None
    if spec.group_from == "domains":
        if domain_table is None:
            raise ValueError("group_from 'domains' needs the domain table")
        scores = read_domain_table(domain_table, **domain_table_options(ideology))
        ideology_settings = IdeologySettings.from_config(ideology)
        settings["ideology"] = dict(ideology)
        settings["domain_table_sha256"] = file_sha256(domain_table)
        print(f"{domain_table}: {len(scores)} scored domains")
    check_has_rows(table, issue)
    result = ingest_posts(
        read_table(table),
        path=table,
        issue=issue,
        spec=spec,
        topics=dict(keywords) if spec.topic_from == "keywords" else list(topics),
        groups=groups,
        # Absent by design when topics come from a column: it changes nothing there.
        multiple_topics=assignment.get("multiple_topics"),
        min_posts_per_group=assignment["min_posts_per_group"],
        domain_scores=scores,
        ideology=ideology_settings,
    )
    for warning in result.warnings:
        print_job_warning(warning)
    provenance = {
        "stage": "human",
        "source": table,
        "source_sha256": file_sha256(table),
        **settings,
        "excluded_topics": result.excluded,
    }
    write_table(result.posts, outputs["posts"], provenance)
    write_csv(result.dropped, outputs["dropped"])
    write_csv(result.users, outputs["users"])
    write_csv(result.quality, outputs["quality"])
    atomic_write_text(outputs["report"], quality_report(result, issue=issue, source=table, settings=settings))
    print(result.quality)
    print(result.dropped)
    return result
