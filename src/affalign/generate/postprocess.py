"""Cleaning of generated posts, and flags for outputs the alignment stage may drop.

The raw text is always kept; these functions only derive the cleaned text and flags.
They accept any string, including broken UTF-8 decoded with replacement characters.
"""

from __future__ import annotations

import re

REFUSAL_PATTERN = re.compile(
    r"\b(i can(?:no|')t|i cannot|i am unable|i'm unable|i won't|as an ai|as a language model|"
    r"i'm sorry,? but|i am sorry,? but|i apologi[sz]e)\b",
    re.IGNORECASE,
)
WORD_PATTERN = re.compile(r"\w+", re.UNICODE)
MIN_WORDS_FOR_DEGENERACY = 8
MAX_TOP_WORD_SHARE = 0.5


def clean_text(raw: str, kind: str) -> str:
    """Trim whitespace; for base models keep only the first line (the post itself)."""
    text = raw.strip()
    if kind == "base":
        text = text.split("\n", 1)[0].strip()
    return text


def is_refusal(text: str) -> bool:
    return bool(REFUSAL_PATTERN.search(text))


def is_degenerate(text: str) -> bool:
    """True for repetition loops: one word making up more than half of eight or more words."""
    words = [word.lower() for word in WORD_PATTERN.findall(text)]
    if len(words) < MIN_WORDS_FOR_DEGENERACY:
        return False
    most_common = max(words.count(word) for word in set(words))
    return most_common / len(words) > MAX_TOP_WORD_SHARE
