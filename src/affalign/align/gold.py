"""A classifier against a gold file of human-labelled posts (``classifiers.<c>.gold``).

The gold file is a CSV: ``post_id``, ``text`` and one 0/1 column per label of the
classifier (:func:`read_gold`; its checks run before any job, in the config checks). Rule
``gold_posts`` writes its posts as ``results/gold/{classifier}/posts.parquet``, the
classifier labels them through the same job as human posts
(``results/classify/{classifier}/gold.parquet``), and rule ``gold_f1`` writes
``results/align/{classifier}/gold_f1.csv`` (:func:`gold_f1_table`).

Conventions
-----------
* Per label, over the posts both the gold file and the classifier labelled (``n``):
  ``support`` = posts that carry the label in the gold file, precision = TP / (TP + FP),
  recall = TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN) (their harmonic mean where both are
  defined).
* Undefined is null, never 0 or 1: precision is null when the classifier gave the label to
  no post, recall when no gold post carries it, and F1 only when both hold (TP + FP + FN =
  0: nothing to find and nothing found says nothing about the classifier). A label the gold
  file has but the classifier never gives, or the other way round, has F1 = 0.
* ``macro``: precision, recall and F1 are the means over the labels where each is defined
  (the mean of per-label F1, not the F1 of the mean precision and recall); ``support`` the
  sum over labels.
* Interval: a seeded percentile bootstrap over posts (:data:`F1_REPLICATES` resamples of
  ``n`` posts with replacement, the same resamples for every label and the macro row).
  Resampling posts is a multinomial draw over the posts' joint (gold, predicted) patterns,
  exact and cheap. A resample in which a label's F1 is undefined is left out of that
  label's interval; a label whose F1 is null has none.
* Posts an LLM judge could not label (``unparsed``, left out of its affect file) are left
  out of ``n``: the log names how many.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from affalign.align.resampling import resample_pattern_counts
from affalign.stats import percentile_interval

GOLD_F1_COLUMNS = ["label", "n", "support", "precision", "recall", "f1", "f1_low", "f1_high"]
F1_REPLICATES = 1000
MACRO = "macro"
# Fewer posts than this and no label can be measured usefully: at 30 posts a label carried
# by a third of them has about 10 positives, and the 95 % interval of its F1 still covers
# near nominal (tests/align/test_gold.py); below it the percentile interval falls short.
MIN_GOLD_POSTS = 30
GOLD_TEXT_COLUMNS = ("post_id", "text")


class GoldError(ValueError):
    """A gold file that cannot be scored (its path, and the row and column at fault)."""


# --- The science: arrays in, numbers out ---------------------------------------------------


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _as_matrix(values: Any) -> np.ndarray:
    """(posts × labels) booleans; a 1-D array is one label."""
    values = np.asarray(values, dtype=bool)
    return values[:, None] if values.ndim == 1 else values


def f1_from_counts(tp: Any, fp: Any, fn: Any) -> dict[str, np.ndarray]:
    """Precision, recall and F1 from true positive, false positive and false negative
    counts (any shape, element by element; NaN where undefined, see the module's
    conventions)."""
    tp, fp, fn = (np.asarray(v, dtype=float) for v in (tp, fp, fn))
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def confusion_counts(truth: Any, predicted: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP and FN per label of two (posts × labels) boolean arrays (a 1-D array is one label)."""
    truth, predicted = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    if truth.shape != predicted.shape:
        raise ValueError(f"truth {truth.shape} and predictions {predicted.shape} differ in shape")
    tp = (truth & predicted).sum(axis=0)
    fp = (~truth & predicted).sum(axis=0)
    fn = (truth & ~predicted).sum(axis=0)
    return tp, fp, fn


def f1_scores(truth: Any, predicted: Any) -> dict[str, np.ndarray]:
    """Per label (columns of the (posts × labels) boolean arrays): ``support``, ``precision``,
    ``recall``, ``f1`` (NaN where undefined)."""
    tp, fp, fn = confusion_counts(truth, predicted)
    return {"support": tp + fn, **f1_from_counts(tp, fp, fn)}


def macro_mean(values: np.ndarray) -> np.ndarray:
    """The mean over the last axis (labels) of the defined values; NaN where none is."""
    values = np.asarray(values, dtype=float)
    defined = np.isfinite(values)
    count = defined.sum(axis=-1)
    return _ratio(np.where(defined, values, 0.0).sum(axis=-1), count)


def f1_replicates(
    truth: Any, predicted: Any, replicates: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap replicates of per-label F1 (replicates × labels) and of macro F1
    (replicates,): ``n`` posts resampled with replacement, as a multinomial draw over the
    posts' joint (gold, predicted) patterns."""
    truth, predicted = _as_matrix(truth), _as_matrix(predicted)
    n, labels = truth.shape
    if n == 0:
        return np.full((replicates, labels), np.nan), np.full(replicates, np.nan)
    patterns, counts = np.unique(np.concatenate([truth, predicted], axis=1), axis=0, return_counts=True)
    gold, said = patterns[:, :labels], patterns[:, labels:]
    drawn = resample_pattern_counts(counts, n, replicates, rng)  # replicates × patterns
    tp = drawn @ (gold & said).astype(float)
    fp = drawn @ (~gold & said).astype(float)
    fn = drawn @ (gold & ~said).astype(float)
    f1 = f1_from_counts(tp, fp, fn)["f1"]
    # The macro mean over the labels whose F1 the sample itself defines.
    scored = np.isfinite(f1_scores(truth, predicted)["f1"])
    return f1, macro_mean(np.where(scored, f1, np.nan))


def f1_with_intervals(
    truth: Any,
    predicted: Any,
    confidence: float,
    rng: np.random.Generator,
    replicates: int = F1_REPLICATES,
) -> dict[str, np.ndarray]:
    """Per-label scores (:func:`f1_scores`) with ``f1_low``/``f1_high`` (a percentile
    bootstrap interval over posts), and the macro row's ``macro_*`` values."""
    truth, predicted = _as_matrix(truth), _as_matrix(predicted)
    scores = f1_scores(truth, predicted)
    per_label, macro = f1_replicates(truth, predicted, replicates, rng)
    low, high = percentile_interval(per_label.T, confidence)
    undefined = ~np.isfinite(scores["f1"])
    low, high = np.where(undefined, np.nan, low), np.where(undefined, np.nan, high)
    macro_low, macro_high = percentile_interval(macro, confidence)
    defined_macro = np.isfinite(macro_mean(scores["f1"]))
    return {
        **scores,
        "f1_low": np.atleast_1d(low),
        "f1_high": np.atleast_1d(high),
        "macro_precision": macro_mean(scores["precision"]),
        "macro_recall": macro_mean(scores["recall"]),
        "macro_f1": macro_mean(scores["f1"]),
        "macro_low": np.asarray(macro_low if defined_macro else np.nan),
        "macro_high": np.asarray(macro_high if defined_macro else np.nan),
    }


# --- Tables --------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def gold_f1_table(gold: pl.DataFrame, predicted: pl.DataFrame, confidence: float, seed: int) -> pl.DataFrame:
    """One row per label of ``gold`` (its ``y_<label>`` columns; ``predicted`` must have
    them too) and a ``macro`` row, over the posts both tables have (joined on ``post_id``)."""
    labels = [c[2:] for c in gold.columns if c.startswith("y_")]
    missing = [label for label in labels if f"y_{label}" not in predicted.columns]
    if missing:
        raise ValueError(f"the classifier's labels lack {missing}, which the gold posts have")
    columns = [f"y_{label}" for label in labels]
    both = gold.select("post_id", *columns).join(
        predicted.select("post_id", *columns), on="post_id", suffix="__predicted"
    )
    truth = both.select(columns).to_numpy().astype(bool)
    said = both.select(f"{c}__predicted" for c in columns).fill_null(False).to_numpy().astype(bool)
    result = f1_with_intervals(truth, said, confidence, np.random.default_rng(seed))
    rows = [
        {
            "label": label,
            "n": both.height,
            "support": int(result["support"][i]),
            **{key: _number(result[key][i]) for key in ("precision", "recall", "f1", "f1_low", "f1_high")},
        }
        for i, label in enumerate(labels)
    ]
    rows.append(
        {
            "label": MACRO,
            "n": both.height,
            "support": int(result["support"].sum()),
            "precision": _number(result["macro_precision"]),
            "recall": _number(result["macro_recall"]),
            "f1": _number(result["macro_f1"]),
            "f1_low": _number(result["macro_low"]),
            "f1_high": _number(result["macro_high"]),
        }
    )
    schema = {"label": pl.String, "n": pl.Int64, "support": pl.Int64}
    schema |= {key: pl.Float64 for key in GOLD_F1_COLUMNS[3:]}
    return pl.DataFrame(rows, schema=schema).select(GOLD_F1_COLUMNS)


# --- The gold file -------------------------------------------------------------------------


def _row(mask: pl.Series) -> int:
    # Row numbers are 1-based and count data rows (the header is not a row), as in ingestion.
    return int(mask.arg_true()[0]) + 1


def read_gold(path: str | Path, labels: Sequence[str]) -> pl.DataFrame:
    """The gold posts of a classifier with ``labels``: ``post_id``, ``text`` (strings, as
    in the file: the text prepared as a human post's, see :func:`gold_posts`) and a boolean
    ``y_<label>`` for each label column the file has, in the classifier's order.

    A missing ``post_id`` or ``text`` column, a label column the classifier does not have,
    no label column at all, a value other than 0 or 1, an empty post id or text, a
    duplicate post id, or fewer than :data:`MIN_GOLD_POSTS` posts raise :class:`GoldError`.
    """
    from affalign.io import TableError, read_table

    path = Path(path)
    if not path.is_file():
        raise GoldError(f"{path} does not exist")
    try:
        raw = read_table(path)
    except TableError as error:
        if path.stat().st_size == 0 or "empty" in str(error).lower():
            raise GoldError(
                f"{path} is empty: it needs a header and at least {MIN_GOLD_POSTS} posts"
            ) from None
        raise GoldError(str(error)) from None
    missing = [column for column in GOLD_TEXT_COLUMNS if column not in raw.columns]
    if missing:
        raise GoldError(
            f"{path} has no column {missing[0]!r} (columns: post_id, text, one 0/1 column per label)"
        )
    unknown = [column for column in raw.columns if column not in GOLD_TEXT_COLUMNS and column not in labels]
    if unknown:
        raise GoldError(
            f"{path}: column {unknown[0]!r} is not a label of the classifier "
            f"(its labels: {', '.join(labels)})"
        )
    present = [label for label in labels if label in raw.columns]
    if not present:
        raise GoldError(f"{path} has no label column (the classifier's labels: {', '.join(labels)})")
    if raw.height == 0:
        raise GoldError(f"{path} is empty: it needs at least {MIN_GOLD_POSTS} posts")
    for column in GOLD_TEXT_COLUMNS:
        blank = raw[column].is_null() | (raw[column].str.strip_chars() == "")
        if blank.any():
            raise GoldError(f"{path}: column {column!r} is empty in row {_row(blank)}")
    duplicated = raw["post_id"].is_duplicated()
    if duplicated.any():
        post_id = raw["post_id"][_row(duplicated) - 1]
        rows = (raw["post_id"] == post_id).arg_true().to_list()
        raise GoldError(
            f"{path}: post id {post_id!r} in row {rows[0] + 1} is not unique (again in row {rows[1] + 1})"
        )
    values = {}
    for label in present:
        cells = raw[label].str.strip_chars()
        wrong = ~cells.is_in(["0", "1"]).fill_null(False)
        if wrong.any():
            row = _row(wrong)
            value = raw[label][row - 1]
            found = "empty" if value is None or not value.strip() else repr(value)
            raise GoldError(f"{path}: column {label!r} row {row} is {found}; labels are 0 or 1")
        values[f"y_{label}"] = cells == "1"
    if raw.height < MIN_GOLD_POSTS:
        raise GoldError(
            f"{path} has {raw.height} posts; an F1 interval needs at least {MIN_GOLD_POSTS} "
            "(docs/classifiers.md: how many posts a useful interval needs)"
        )
    return raw.select(pl.col("post_id").cast(pl.String), pl.col("text").cast(pl.String)).with_columns(
        **values
    )


def gold_posts(path: str | Path, labels: Sequence[str]) -> pl.DataFrame:
    """The gold posts as the classify jobs read human posts: ``post_id`` and ``text`` as
    strings, the text as the file has it (ingestion keeps a human post's text verbatim; each
    classifier normalises text itself, the same for every post), sorted by ``post_id``, plus
    the gold labels ``y_<label>``."""
    return read_gold(path, labels).sort("post_id")


def write_gold_posts(gold: str | Path, labels: Sequence[str], output: str | Path) -> pl.DataFrame:
    """Rule ``gold_posts``: the gold file's posts and labels as parquet, with provenance."""
    from affalign.io import file_sha256, write_table

    posts = gold_posts(gold, labels)
    provenance = {
        "stage": "gold",
        "gold_file": str(gold),
        "gold_sha256": file_sha256(gold),
        "labels": [c[2:] for c in posts.columns if c.startswith("y_")],
        "posts": posts.height,
    }
    write_table(posts, output, provenance)
    print(f"[affalign] {gold}: {posts.height} gold posts, labels {provenance['labels']}", flush=True)
    return posts


def write_gold_f1(
    gold: str | Path, predicted: str | Path, output: str | Path, confidence: float, seed: int
) -> pl.DataFrame:
    """Rule ``gold_f1``: the classifier's labels of the gold posts against the gold labels."""
    from affalign.io import read_provenance, write_csv

    truth, said = pl.read_parquet(gold), pl.read_parquet(predicted)
    table = gold_f1_table(truth, said, confidence, seed)
    left_out = truth.height - table["n"][0]
    unparsed = read_provenance(predicted).get("unparsed")
    print(
        f"[affalign] {predicted}: {table['n'][0]} of {truth.height} gold posts scored"
        + (
            f" ({left_out} left out: the judge's answer could not be read for {unparsed})" if left_out else ""
        ),
        flush=True,
    )
    write_csv(table, output)
    return table
