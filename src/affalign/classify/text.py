"""Text normalisation before classification, the same for human and generated posts."""

from __future__ import annotations

import re

URL_PATTERN = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
MENTION_PATTERN = re.compile(r"(?<!\w)@\w+")


def _replace(text: str | None, url: str, mention: str, hashtag: str) -> str:
    if not text:
        return ""
    text = MENTION_PATTERN.sub(mention, URL_PATTERN.sub(url, text))
    return " ".join(text.replace("#", hashtag).split())


def normalise_text(text: str | None) -> str:
    """For lexicons: drop URLs and @mentions and keep hashtag words (``#MaskUp`` → ``MaskUp``)."""
    return _replace(text, " ", " ", " ")


def normalise_tweet(text: str | None) -> str:
    """For TweetNLP-style classifiers: URLs become ``http``, mentions ``@user``; '#' is kept."""
    return _replace(text, "http", "@user", "#")
