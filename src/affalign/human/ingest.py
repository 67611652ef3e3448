"""Ingest human posts into one normalised table per issue (rule ``ingest_human``).

The normalised table has the columns ``post_id``, ``issue``, ``topic``, ``group``, ``text``
(all strings). How the input table's columns, URLs and group and topic values are read and
checked: :mod:`affalign.human.source`; posts per topic × group and the report:
:mod:`affalign.human.quality`.

* **Groups** come from a column (``group_from: column``) or from the news domains users
  share (``group_from: domains``, see :mod:`affalign.human.ideology`). **Topics** come from a
  column (``topic_from: column``) or from keywords (``topic_from: keywords``, see
  :mod:`affalign.human.topics`). A post placed in several topics (policy ``all``) appears once
  per topic with post id ``<post_id>@<topic>``.
* **Rows left out** are counted per reason, each row under its first reason in this order:
  the group (not in the study / the user's ideology), the topic column (not in the study),
  empty text, the keywords (no topic / several topics). Then topics with fewer than
  ``topic_assignment.min_posts_per_group`` posts from a group are excluded from alignment
  (their posts are counted under ``topic below minimum posts``, once per topic).
* **Settings** come from the config after schema validation, which fills in every default
  (``workflow/schemas/config.schema.yaml`` is the one place they are written); nothing here
  supplies a default of its own.
"""

from __future__ import annotations

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
from affalign.human.quality import IngestResult, quality_report, topic_quality
from affalign.human.source import (
    HumanDataError,
    SourceSpec,
    check_has_rows,
    extract_fields,
    is_blank,
    match_groups,
    match_topics,
    no_rows_error,
)
from affalign.human.topics import MULTIPLE_TOPIC_POLICIES, assign_topics
from affalign.io import (
    atomic_write_text,
    file_sha256,
    print_job_warning,
    read_table,
    write_csv,
    write_table,
)

NORMALISED_SCHEMA = {
    "post_id": pl.String,
    "issue": pl.String,
    "topic": pl.String,
    "group": pl.String,
    "text": pl.String,
}
MULTI_TOPIC_SEPARATOR = "@"

REASON_GROUP = "group not in study"
REASON_TOPIC = "topic not in study"
REASON_EMPTY = "empty text"
REASON_NO_KEYWORD = "no topic keyword"
REASON_SEVERAL = "several topics"
REASON_EXCLUDED = "topic below minimum posts"
# Row numbers named in a warning about rows left out; the rest are counted.
LISTED_ROWS = 10

USERS_SCHEMA = {"issue": pl.String, **USER_SCHEMA}


@dataclass(frozen=True)
class StudyDesign:
    """What the study asks of one issue's posts: its topics (slugs in config order mapped to
    their keywords; a plain sequence of slugs when topics come from a column), its groups,
    the policy for posts matching several topics' keywords (None when topics come from a
    column) and the fewest posts per topic and group (0: a topic without posts from a group
    is an error; above 0: a topic with fewer is excluded)."""

    topics: Mapping[str, Sequence[str]] | Sequence[str]
    groups: Sequence[str]
    multiple_topics: str | None
    min_posts_per_group: int


def ingest_posts(
    raw: pl.DataFrame,
    *,
    path: str | Path,
    issue: str,
    spec: SourceSpec,
    study: StudyDesign,
    domain_scores: Mapping[str, float] | None = None,
    ideology: IdeologySettings | None = None,
) -> IngestResult:
    """Validate, assign groups and topics, and normalise one issue's posts.

    With ``study.min_posts_per_group`` 0, a topic without posts from a group is an error;
    above 0, a topic with fewer posts than that from any group is excluded (left out of
    ``posts``, listed in ``excluded`` and ``warnings``). A group without any posts in the
    issue is always an error. ``domain_scores`` and ``ideology`` are needed when groups come
    from domains.
    """
    topics, groups = study.topics, study.groups
    multiple_topics, min_posts_per_group = study.multiple_topics, study.min_posts_per_group
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

    empty_text = is_blank(fields["text"])
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

    quality, excluded, topic_warnings = topic_quality(
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


@dataclass(frozen=True)
class IngestParams:
    """The params of rule ``ingest_human`` (:mod:`affalign.config.human`): ``source`` is the
    schema-validated ``human.<issue>`` section without its path; ``keywords`` (topic ->
    keywords) is read when topics come from keywords, ``topics`` (slugs) otherwise;
    ``topic_assignment`` has ``min_posts_per_group`` and, with keywords, ``multiple_topics``;
    ``ideology`` (the validated section) is read when groups come from domains."""

    source: Mapping[str, Any]
    topics: Sequence[str]
    keywords: Mapping[str, Sequence[str]]
    groups: Sequence[str]
    topic_assignment: Mapping[str, Any]
    ideology: Mapping[str, Any]


def run_ingest(
    *,
    issue: str,
    table: str,
    outputs: Mapping[str, str],
    params: IngestParams,
    domain_table: str | None = None,
) -> IngestResult:
    """Ingest one issue's ``table`` and write the five ``outputs`` (rule ``ingest_human``).

    ``outputs`` has the paths ``posts`` (parquet with provenance), ``dropped``, ``users``,
    ``quality`` (CSV) and ``report`` (Markdown); ``domain_table`` is read when groups come
    from domains. Warnings go to stdout (the job's log) and to the console.
    """
    spec = SourceSpec.from_config(params.source)
    assignment = dict(params.topic_assignment)
    ideology = params.ideology
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
        study=StudyDesign(
            topics=dict(params.keywords) if spec.topic_from == "keywords" else list(params.topics),
            groups=params.groups,
            # Absent by design when topics come from a column: it changes nothing there.
            multiple_topics=assignment.get("multiple_topics"),
            min_posts_per_group=assignment["min_posts_per_group"],
        ),
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
