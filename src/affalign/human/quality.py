"""Topic quality of one issue's ingested posts: posts and users per topic × group, the
topics excluded from alignment for too few posts from a group, and the Markdown report
(``quality.md``) of everything the ingestion found out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from affalign.human.source import HumanDataError

QUALITY_SCHEMA = {
    "issue": pl.String,
    "topic": pl.String,
    "group": pl.String,
    "posts": pl.Int64,
    "users": pl.Int64,
    "status": pl.String,
    "reason": pl.String,
}


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


def topic_quality(
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
