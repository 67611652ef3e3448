"""Place human posts in topics by the keywords and hashtags of each topic.

Conventions:

* Matching is case-insensitive (Unicode case folding) and on word boundaries: a keyword
  matches where it is neither preceded nor followed by a letter, digit or underscore.
  ``mask`` matches "Mask," and "#mask" but not "masks" or "unmask".
* Whitespace inside a keyword matches any run of whitespace (``mask mandate`` matches
  "mask\\n mandate"); every other character is literal (no regular expressions).
* A keyword that starts with ``#`` is a hashtag: ``#maskup`` matches "#MaskUp" but not
  "maskup" or "#maskupnow".
* Topics keep their config order; the policy ``first`` takes the first matching topic in
  that order.

Policies for a post that matches several topics (``topic_assignment.multiple_topics``):
``all`` places it in every matching topic, ``first`` in the first one, ``drop`` leaves it
out. A post that matches no topic is always left out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import polars as pl

MULTIPLE_TOPIC_POLICIES = ("all", "first", "drop")


def keyword_regex(keyword: str) -> str:
    """The regular expression (Rust syntax, as polars uses) for one keyword, without boundaries."""
    words = keyword.split()
    if not words:
        raise ValueError(f"keyword {keyword!r} is empty")
    return r"\s+".join(re.escape(word) for word in words)


def topic_pattern(keywords: Sequence[str]) -> str:
    """One case-insensitive pattern that matches a text containing any of ``keywords``.

    polars' regex engine has no look-around, so the boundaries consume the neighbouring
    non-word character; that is enough to decide whether a text contains a keyword.
    """
    if not keywords:
        raise ValueError("a topic needs at least one keyword")
    alternatives = "|".join(keyword_regex(keyword) for keyword in keywords)
    return rf"(?i)(?:^|[^\w])(?:{alternatives})(?:[^\w]|$)"


def match_topics(texts: pl.Series, topics: Mapping[str, Sequence[str]]) -> pl.Series:
    """For each text, the topics (in config order) whose keywords it contains.

    Returns a ``list[str]`` series, empty for a text that matches nothing (or is null).
    """
    frame = pl.DataFrame({"text": texts.cast(pl.String)})
    if not topics:
        return pl.Series("matched", [[] for _ in range(len(texts))], dtype=pl.List(pl.String))
    hits = [
        pl.when(pl.col("text").str.contains(topic_pattern(keywords)).fill_null(False))
        .then(pl.lit(topic))
        .otherwise(pl.lit(None, pl.String))
        for topic, keywords in topics.items()
    ]
    return frame.select(pl.concat_list(hits).list.drop_nulls().alias("matched"))["matched"]


def apply_policy(matched: pl.Series, policy: str) -> pl.Series:
    """The topics each post is placed in under ``policy`` (``all``, ``first`` or ``drop``).

    ``matched`` is the output of :func:`match_topics`; an empty list means the post is left
    out (no match, or several matches under ``drop``).
    """
    if policy not in MULTIPLE_TOPIC_POLICIES:
        raise ValueError(f"unknown multiple-topic policy {policy!r}; use one of {MULTIPLE_TOPIC_POLICIES}")
    frame = pl.DataFrame({"matched": matched})
    column = pl.col("matched")
    if policy == "all":
        assigned = column
    elif policy == "first":
        assigned = column.list.head(1)
    else:
        assigned = pl.when(column.list.len() == 1).then(column).otherwise(column.list.head(0))
    return frame.select(assigned.alias("assigned"))["assigned"]


def assign_topics(texts: pl.Series, topics: Mapping[str, Sequence[str]], policy: str) -> pl.DataFrame:
    """Match ``texts`` against the topics' keywords and apply the multiple-topic ``policy``.

    Returns one row per text with ``matched`` (every matching topic) and ``assigned`` (the
    topics the post is placed in; empty when it is left out).
    """
    matched = match_topics(texts, topics)
    return pl.DataFrame({"matched": matched, "assigned": apply_policy(matched, policy)})
