"""Users' ideology from the political bias of the news domains they share.

Conventions:

* **Scale.** A domain's score lies on ``ideology.scale`` (e.g. ``[-2, 2]``): negative is
  liberal, positive conservative, 0 the centre (e.g. -2 left, -1 left-center, 0 least
  biased, 1 right-center, 2 right, as Media Bias/Fact Check rates outlets). A domain table
  gives the score directly, or a category (``left-center``) that ``ideology.categories``
  maps to a score; a category mapped to ``null`` (e.g. ``satire``) leaves the domain
  unscored.
* **Host of a URL.** Lower-cased; scheme, user, port, path, query and a trailing dot
  removed; a leading ``www.`` stripped. ``https://www.NYTimes.com/x`` → ``nytimes.com``.
  A URL without a scheme (``nytimes.com/x``) is read as ``http://``; other schemes
  (``mailto:``) and malformed hosts give no host.
* **Registrable domain.** The last two labels of the host, or the last three when the last
  two are a known two-part public suffix (:data:`TWO_PART_SUFFIXES`, e.g. ``co.uk``):
  ``m.foxnews.com`` → ``foxnews.com``, ``news.bbc.co.uk`` → ``bbc.co.uk``. IP addresses
  and one-label hosts stay whole. This is a simple rule, not the full Public Suffix List.
* **Lookup.** A URL's host is looked up in the domain table as it is, then each parent
  domain in turn down to the registrable domain; the first one listed gives the score. So a
  table entry ``abcnews.go.com`` scores that host only, and ``foxnews.com`` scores
  ``foxnews.com``, ``m.foxnews.com`` and ``video.foxnews.com``. Only the host of a table
  entry is used (``https://www.nytimes.com/section`` lists ``nytimes.com``).
* **A user's score** is the mean over the user's scored URL shares (a URL listed twice in
  one post counts once). Users with fewer than ``min_scored_urls`` scored shares get no
  group; otherwise ``score <= liberal_max`` is liberal, ``score >= conservative_min``
  conservative, and anything in between gets no group. Why a user gets no group is one of
  :data:`REASON_FEW_URLS` and :data:`REASON_BETWEEN`, the same words in ``users.csv`` and,
  for the user's posts, in ``dropped.csv``.

Settings come from the ``ideology`` config section after schema validation, which fills in
every default (``workflow/schemas/config.schema.yaml`` is the one place they are written).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import polars as pl

from affalign.io import TableError, read_table, table_has_rows

TWO_PART_SUFFIXES = frozenset(
    {
        # United Kingdom
        "co.uk", "org.uk", "ac.uk", "gov.uk", "ltd.uk", "plc.uk", "me.uk", "net.uk", "nhs.uk",
        # Australia, New Zealand
        "com.au", "net.au", "org.au", "edu.au", "gov.au", "co.nz", "org.nz", "net.nz", "govt.nz",
        # Asia
        "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp", "co.kr", "or.kr", "co.in", "net.in", "org.in",
        "gov.in", "com.cn", "com.hk", "com.sg", "com.tw", "com.my", "com.ph", "com.pk", "co.id",
        "co.th", "co.il", "org.il",
        # Americas, Africa, Europe
        "com.br", "com.mx", "com.ar", "com.co", "com.pe", "com.ve", "co.za", "org.za", "com.ng",
        "co.ke", "com.eg", "com.tr", "com.ua", "com.pl",
    }
)  # fmt: skip

NON_WEB_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+-]*:(?!//)")
LABEL = re.compile(r"[\w-]+")
REASON_FEW_URLS = "user has too few scored URLs"
REASON_BETWEEN = "user's score between the thresholds"


class DomainTableError(TableError):
    """A domain-bias table that cannot be used as it is (a data error: one line, no traceback)."""


def url_host(url: str | None) -> str | None:
    """The normalised host of a URL (see the module conventions), or None."""
    if url is None:
        return None
    text = url.strip()
    if not text or NON_WEB_SCHEME.match(text):
        return None
    if "://" not in text:
        text = "http:" + text if text.startswith("//") else "http://" + text
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    if _is_ip(host):
        return host
    labels = host.split(".")
    if not all(labels) or not all(LABEL.fullmatch(label) for label in labels):
        return None
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def registrable_domain(host: str) -> str:
    """The registrable domain of a normalised host: last two labels, three after a two-part suffix."""
    if _is_ip(host):
        return host
    labels = host.split(".")
    keep = 3 if ".".join(labels[-2:]) in TWO_PART_SUFFIXES else 2
    return ".".join(labels[-keep:])


def normalise_domain(url: str | None) -> str | None:
    """The registrable domain of a URL: ``https://www.NYTimes.com/x`` → ``nytimes.com``."""
    host = url_host(url)
    return None if host is None else registrable_domain(host)


def lookup_candidates(host: str) -> list[str]:
    """The host and its parent domains down to the registrable domain, most specific first."""
    base = registrable_domain(host)
    candidates = [host]
    while candidates[-1] != base and "." in candidates[-1]:
        candidates.append(candidates[-1].split(".", 1)[1])
    return candidates


def score_url(url: str | None, scores: Mapping[str, float]) -> tuple[str | None, str | None, float | None]:
    """``(registrable domain, table entry used, score)`` of one URL; Nones where unknown."""
    host = url_host(url)
    if host is None:
        return None, None, None
    for candidate in lookup_candidates(host):
        if candidate in scores:
            return registrable_domain(host), candidate, scores[candidate]
    return registrable_domain(host), None, None


@dataclass(frozen=True)
class IdeologySettings:
    """How users' scores become groups (all on the domain table's scale)."""

    scale: tuple[float, float]
    min_scored_urls: int
    liberal_max: float
    conservative_min: float

    @classmethod
    def from_config(cls, ideology: Mapping[str, Any]) -> IdeologySettings:
        """From the schema-validated ``ideology`` section (the schema fills its defaults)."""
        low, high = ideology["scale"]
        return cls(
            scale=(float(low), float(high)),
            min_scored_urls=int(ideology["min_scored_urls"]),
            liberal_max=float(ideology["liberal_max"]),
            conservative_min=float(ideology["conservative_min"]),
        )

    def problems(self) -> list[str]:
        """What is inconsistent, each naming the config key (empty when all is well)."""
        low, high = self.scale
        scale = f"[{low:g}, {high:g}]"
        found = []
        if not low < high:
            found.append(f"ideology.scale {scale} must be [most liberal, most conservative], lowest first")
        for key in ("liberal_max", "conservative_min"):
            value = getattr(self, key)
            if not low <= value <= high:
                found.append(f"ideology.{key} {value:g} is outside ideology.scale {scale}")
        if not self.liberal_max < self.conservative_min:
            found.append(
                f"ideology.liberal_max {self.liberal_max:g} must be below ideology.conservative_min "
                f"{self.conservative_min:g}"
            )
        if self.min_scored_urls < 1:
            found.append(f"ideology.min_scored_urls {self.min_scored_urls} must be at least 1")
        return found


def domain_scores(
    table: pl.DataFrame,
    *,
    path: str | Path,
    domain_column: str,
    scale: Sequence[float],
    score_column: str | None = None,
    category_column: str | None = None,
    categories: Mapping[str, float | None] | None = None,
) -> dict[str, float]:
    """Validate a domain-bias table and return ``{host: score}``.

    Give either ``score_column`` (numbers on ``scale``) or ``category_column`` with
    ``categories`` (category → score or None; matched case-insensitively, surrounding
    spaces ignored). Every problem raises :class:`DomainTableError` naming the file, column
    and row (1-based, data rows only).
    """
    if (score_column is None) == (category_column is None):
        raise DomainTableError(
            f"{path}: give exactly one of ideology.domain_columns.score and ideology.domain_columns.category"
        )
    value_column = score_column if score_column is not None else category_column
    value_key = "score" if score_column is not None else "category"
    for key, column in (("domain", domain_column), (value_key, value_column)):
        if column not in table.columns:
            raise DomainTableError(
                f"{path}: column {column!r} (config key ideology.domain_columns.{key}) is missing; "
                f"the table has {table.columns}"
            )
    low, high = float(scale[0]), float(scale[1])
    domains = table[domain_column]
    if domains.dtype not in (pl.String, pl.Null):
        raise DomainTableError(
            f"{path}: column {domain_column!r} (domain) must hold text, found {domains.dtype}"
        )
    if category_column is not None:
        mapping = {str(key).strip().lower(): value for key, value in (categories or {}).items()}
        if not mapping:
            raise DomainTableError(
                f"{path}: column {category_column!r} holds categories but ideology.categories is empty"
            )
        for key, value in mapping.items():
            if value is not None and not (math.isfinite(value) and low <= value <= high):
                raise DomainTableError(
                    f"ideology.categories.{key} = {value} is outside ideology.scale [{low:g}, {high:g}]"
                )
    values = table[value_column]
    seen: dict[str, tuple[int, float | None]] = {}
    scores: dict[str, float] = {}
    for index, (domain, raw) in enumerate(zip(domains.to_list(), values.to_list(), strict=True)):
        row = index + 1
        if domain is None or not str(domain).strip():
            raise DomainTableError(f"{path}: column {domain_column!r} is empty in row {row}")
        host = url_host(str(domain))
        if host is None:
            raise DomainTableError(f"{path}: column {domain_column!r} row {row}: {domain!r} is not a domain")
        if category_column is not None:
            score = _category_score(raw, mapping, path=path, column=category_column, row=row)
        else:
            score = _numeric_score(raw, path=path, column=value_column, row=row, scale=(low, high))
        if host in seen and seen[host][1] != score:
            first_row, first_score = seen[host]
            raise DomainTableError(
                f"{path}: domain {host!r} is listed in rows {first_row} and {row} (column {domain_column!r}) "
                f"with different scores ({first_score} and {score})"
            )
        seen.setdefault(host, (row, score))
        if score is not None:
            scores[host] = score
    return scores


def _numeric_score(
    raw: object, *, path: str | Path, column: str, row: int, scale: tuple[float, float]
) -> float:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise DomainTableError(f"{path}: column {column!r} (score) is empty in row {row}")
    if isinstance(raw, bool):
        raise DomainTableError(f"{path}: column {column!r} row {row}: {raw!r} is not a number")
    try:
        score = float(raw.strip() if isinstance(raw, str) else raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DomainTableError(f"{path}: column {column!r} row {row}: {raw!r} is not a number") from None
    low, high = scale
    if not math.isfinite(score) or not low <= score <= high:
        raise DomainTableError(
            f"{path}: column {column!r} row {row}: score {raw!r} is outside the scale "
            f"[{low:g}, {high:g}] (config key ideology.scale)"
        )
    return score


def _category_score(
    raw: object, mapping: Mapping[str, float | None], *, path: str | Path, column: str, row: int
) -> float | None:
    if raw is None or not str(raw).strip():
        raise DomainTableError(f"{path}: column {column!r} (category) is empty in row {row}")
    key = str(raw).strip().lower()
    if key not in mapping:
        raise DomainTableError(
            f"{path}: column {column!r} row {row}: category {raw!r} is not in ideology.categories "
            f"({sorted(mapping)})"
        )
    value = mapping[key]
    return None if value is None else float(value)


def read_domain_table(path: str | Path, **options: Any) -> dict[str, float]:
    """Read (CSV, parquet or JSON lines) and validate a domain-bias table: ``{host: score}``.

    ``options`` are the keyword arguments of :func:`domain_scores`.
    """
    try:
        has_rows = table_has_rows(path)
        table = read_table(path) if has_rows else None
    except TableError as error:
        raise DomainTableError(str(error)) from error
    if table is None:
        raise DomainTableError(
            f"{path}: the domain table has no rows; config key ideology.domain_table must name a "
            "table with at least one domain and its score: check the file or fix the path"
        )
    return domain_scores(table, path=path, **options)


def domain_table_options(ideology: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`read_domain_table` from the schema-validated ``ideology``
    section. The schema sets ``domain_columns.score`` unless ``category`` is given, so exactly
    one of the two is present."""
    columns = ideology["domain_columns"]
    return {
        "domain_column": columns["domain"],
        "score_column": columns.get("score"),
        "category_column": columns.get("category"),
        "categories": dict(ideology["categories"]),
        "scale": tuple(ideology["scale"]),
    }


SHARE_SCHEMA = {
    "user": pl.String,
    "url": pl.String,
    "domain": pl.String,
    "matched": pl.String,
    "score": pl.Float64,
}


def url_shares(posts: pl.DataFrame, scores: Mapping[str, float]) -> pl.DataFrame:
    """One row per URL shared in a post: ``user``, ``url``, ``domain`` (registrable),
    ``matched`` (the table entry used) and ``score`` (null when unscored).

    ``posts`` has ``user`` and ``urls`` (``list[str]``); a URL listed twice in one post
    counts once.
    """
    shares = (
        posts.select("user", pl.col("urls").list.drop_nulls().list.unique(maintain_order=True).alias("url"))
        .explode("url")
        .filter(pl.col("url").is_not_null() & (pl.col("url").str.strip_chars() != ""))
    )
    unique = shares["url"].unique().to_list()
    looked_up = [score_url(url, scores) for url in unique]
    lookup = pl.DataFrame(
        {
            "url": unique,
            "domain": [entry[0] for entry in looked_up],
            "matched": [entry[1] for entry in looked_up],
            "score": [entry[2] for entry in looked_up],
        },
        schema={"url": pl.String, "domain": pl.String, "matched": pl.String, "score": pl.Float64},
    )
    return shares.join(lookup, on="url", how="left").select(list(SHARE_SCHEMA)).cast(SHARE_SCHEMA)


USER_SCHEMA = {
    "user": pl.String,
    "posts": pl.Int64,
    "urls": pl.Int64,
    "scored_urls": pl.Int64,
    "score": pl.Float64,
    "group": pl.String,
    "reason": pl.String,
}


def user_ideology(posts: pl.DataFrame, shares: pl.DataFrame, settings: IdeologySettings) -> pl.DataFrame:
    """Per-user score and group: ``user``, ``posts``, ``urls``, ``scored_urls``, ``score``,
    ``group`` (``liberal``, ``conservative`` or null) and ``reason`` (why no group).

    ``posts`` has a ``user`` column (one row per post); ``shares`` comes from
    :func:`url_shares`. Every user in ``posts`` gets a row, sorted by user.
    """
    per_user = posts.group_by("user").agg(pl.len().cast(pl.Int64).alias("posts"))
    per_share = shares.group_by("user").agg(
        pl.len().cast(pl.Int64).alias("urls"),
        pl.col("score").count().cast(pl.Int64).alias("scored_urls"),
        pl.col("score").mean().alias("score"),
    )
    users = per_user.join(per_share, on="user", how="left").with_columns(
        pl.col("urls").fill_null(0), pl.col("scored_urls").fill_null(0)
    )
    enough = pl.col("scored_urls") >= settings.min_scored_urls
    group = (
        pl.when(~enough)
        .then(pl.lit(None, pl.String))
        .when(pl.col("score") <= settings.liberal_max)
        .then(pl.lit("liberal"))
        .when(pl.col("score") >= settings.conservative_min)
        .then(pl.lit("conservative"))
        .otherwise(pl.lit(None, pl.String))
    )
    reason = (
        pl.when(~enough)
        .then(pl.lit(REASON_FEW_URLS))
        .when(pl.col("group").is_null())
        .then(pl.lit(REASON_BETWEEN))
        .otherwise(pl.lit(None, pl.String))
    )
    return (
        users.with_columns(group.alias("group"))
        .with_columns(reason.alias("reason"))
        .select(list(USER_SCHEMA))
        .cast(USER_SCHEMA)
        .sort("user")
    )
