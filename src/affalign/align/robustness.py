"""Do a study's conclusions survive a classifier swap? (``results/align/robustness.csv``)

For every pair of classifiers of a study (rule ``robustness``), from their align tables:

* ``alignment_corrected``: the Spearman rank correlation of model-level corrected
  alignment (``model_summary``: one value per model × prompt type × issue × group) over the
  rows both classifiers score (``n``), with its p-value (``scipy.stats.spearmanr``);
* ``tendency`` and ``steerability``: among the conclusions significant under either
  classifier (Holm-adjusted ``p_holm`` below ``alpha``) that both classifiers score, the
  share whose corrected estimate has the same sign under both (``share_sign_agrees``);
* ``baseline_gap``: the same for below/above-baseline findings, significant where the
  model-level gap's interval (``gap_low``..``gap_high``) excludes 0.

* ``kappa``: for each label both classifiers have (same name, after
  ``robustness.label_map``, which may merge labels of one classifier), Cohen's kappa of their
  labels on the human posts both labelled (``label``, ``n``), with a seeded percentile
  bootstrap interval over posts (``kappa_low``, ``kappa_high``).

A share is null when no conclusion was significant under either classifier (nothing to
agree on); a correlation is null with fewer than three shared rows or a constant column; a
kappa is null when both classifiers give one value to every post (chance agreement 1).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import spearmanr

ROBUSTNESS_COLUMNS = [
    "classifier_a",
    "classifier_b",
    "measure",
    "label",
    "n",
    "spearman",
    "spearman_p",
    "n_significant",
    "n_sign_agrees",
    "share_sign_agrees",
    "kappa",
    "kappa_low",
    "kappa_high",
]
KAPPA_REPLICATES = 1000
SUMMARY_KEYS = ["model", "prompt_type", "issue", "group"]
# measure -> (table, keys, estimate, how significance is read)
CONCLUSIONS = {
    "tendency": ("tendency", ["model", "issue", "prompt_type"], "tendency_corrected", "p_holm"),
    "steerability": ("steerability", ["model", "issue", "group"], "steerability_corrected", "p_holm"),
    "baseline_gap": ("model_summary", SUMMARY_KEYS, "baseline_gap", "interval"),
}


def _significant(frame: pl.DataFrame, how: str, alpha: float) -> pl.Expr:
    if how == "interval":
        return ((pl.col("gap_high") < 0) | (pl.col("gap_low") > 0)).fill_null(False)
    return (pl.col(how) < alpha).fill_null(False)


def rank_correlation(a: pl.DataFrame, b: pl.DataFrame) -> dict[str, object]:
    """Spearman's rho of ``alignment_corrected`` over the model-level rows both tables have."""
    pairs = (
        a.select(*SUMMARY_KEYS, pl.col("alignment_corrected").alias("a"))
        .join(b.select(*SUMMARY_KEYS, pl.col("alignment_corrected").alias("b")), on=SUMMARY_KEYS)
        .drop_nulls(["a", "b"])
        .filter(pl.col("a").is_finite() & pl.col("b").is_finite())
    )
    rho = p = None
    if pairs.height >= 3 and pairs["a"].n_unique() > 1 and pairs["b"].n_unique() > 1:
        result = spearmanr(pairs["a"].to_numpy(), pairs["b"].to_numpy())
        rho, p = float(result.statistic), float(result.pvalue)
    return {"n": pairs.height, "spearman": rho, "spearman_p": p}


def sign_agreement(
    a: pl.DataFrame, b: pl.DataFrame, keys: list[str], estimate: str, how: str, alpha: float
) -> dict[str, object]:
    """Among conclusions significant under either table (and scored by both), how many have
    an estimate of the same sign under both."""

    def marked(frame: pl.DataFrame, side: str) -> pl.DataFrame:
        return frame.select(
            *keys,
            pl.col(estimate).alias(f"value_{side}"),
            _significant(frame, how, alpha).alias(f"significant_{side}"),
        )

    both = marked(a, "a").join(marked(b, "b"), on=keys).drop_nulls(["value_a", "value_b"])
    chosen = both.filter(pl.col("significant_a") | pl.col("significant_b"))
    agrees = int((np.sign(chosen["value_a"].to_numpy()) == np.sign(chosen["value_b"].to_numpy())).sum())
    return {
        "n": both.height,
        "n_significant": chosen.height,
        "n_sign_agrees": agrees,
        "share_sign_agrees": agrees / chosen.height if chosen.height else None,
    }


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cohen's kappa of two boolean vectors: (observed - chance agreement) / (1 - chance)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.size == 0:
        return None
    observed = float(np.mean(a == b))
    chance = float(a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean()))
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


def map_labels(human: pl.DataFrame, mapping: Mapping[str, str] | None) -> pl.DataFrame:
    """``post_id`` and one ``y_<name>`` per shared name: a post carries a name when it
    carries any label mapped onto it (labels not in ``mapping`` keep their names)."""
    mapping = mapping or {}
    targets: dict[str, list[str]] = {}
    for column in (c for c in human.columns if c.startswith("y_")):
        targets.setdefault(f"y_{mapping.get(column[2:], column[2:])}", []).append(column)
    return human.select(
        "post_id",
        *(
            pl.any_horizontal([pl.col(c).fill_null(False) for c in columns]).alias(name)
            for name, columns in targets.items()
        ),
    )


def kappa_rows(
    human_a: pl.DataFrame,
    human_b: pl.DataFrame,
    confidence: float,
    seed: int,
    map_a: Mapping[str, str] | None = None,
    map_b: Mapping[str, str] | None = None,
) -> list[dict[str, object]]:
    """Per shared label (after ``map_a``/``map_b``): kappa on the posts both labelled, with
    a percentile bootstrap interval."""
    human_a, human_b = map_labels(human_a, map_a), map_labels(human_b, map_b)
    shared = sorted(
        {c for c in human_a.columns if c.startswith("y_")}
        & {c for c in human_b.columns if c.startswith("y_")}
    )
    if not shared:
        return []
    both = human_a.select("post_id", *shared).join(
        human_b.select("post_id", *shared), on="post_id", suffix="__b"
    )
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, both.height, size=(KAPPA_REPLICATES, both.height)) if both.height else None
    rows = []
    for column in shared:
        a = both[column].fill_null(False).to_numpy()
        b = both[f"{column}__b"].fill_null(False).to_numpy()
        kappa = cohen_kappa(a, b)
        low = high = None
        if kappa is not None and draws is not None:
            replicates = [cohen_kappa(a[d], b[d]) for d in draws]
            finite = np.array([r for r in replicates if r is not None])
            if finite.size:
                tail = (1 - confidence) / 2 * 100
                low, high = (float(v) for v in np.percentile(finite, [tail, 100 - tail]))
        rows.append(
            {"label": column[2:], "n": both.height, "kappa": kappa, "kappa_low": low, "kappa_high": high}
        )
    return rows


def robustness_table(
    tables: Mapping[str, Mapping[str, pl.DataFrame]],
    alpha: float,
    confidence: float = 0.95,
    seed: int = 0,
    label_map: Mapping[str, Mapping[str, str]] | None = None,
) -> pl.DataFrame:
    """One row per classifier pair and measure (see the module's docstring). ``tables``:
    classifier -> {"model_summary", "tendency", "steerability"} and, for kappa, "human"
    (the classifier's human affect files, concatenated)."""
    rows = []
    for first, second in itertools.combinations(sorted(tables), 2):
        a, b = tables[first], tables[second]
        if "human" in a and "human" in b:
            rows += [
                {"classifier_a": first, "classifier_b": second, "measure": "kappa"} | row
                for row in kappa_rows(
                    a["human"],
                    b["human"],
                    confidence,
                    seed,
                    (label_map or {}).get(first),
                    (label_map or {}).get(second),
                )
            ]
        rows.append(
            {"classifier_a": first, "classifier_b": second, "measure": "alignment_corrected"}
            | rank_correlation(a["model_summary"], b["model_summary"])
        )
        for measure, (table, keys, estimate, how) in CONCLUSIONS.items():
            rows.append(
                {"classifier_a": first, "classifier_b": second, "measure": measure}
                | sign_agreement(a[table], b[table], keys, estimate, how, alpha)
            )
    schema = {
        "classifier_a": pl.String,
        "classifier_b": pl.String,
        "measure": pl.String,
        "label": pl.String,
        "n": pl.Int64,
        "spearman": pl.Float64,
        "spearman_p": pl.Float64,
        "n_significant": pl.Int64,
        "n_sign_agrees": pl.Int64,
        "share_sign_agrees": pl.Float64,
        "kappa": pl.Float64,
        "kappa_low": pl.Float64,
        "kappa_high": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema).select(ROBUSTNESS_COLUMNS)


def write_robustness(
    classifiers: list[str],
    inputs: Mapping[str, list[str]],
    human: Mapping[str, list[str]],
    output: str | Path,
    alpha: float,
    confidence: float,
    seed: int,
    label_map: Mapping[str, Mapping[str, str]] | None = None,
) -> pl.DataFrame:
    """Read each classifier's align tables (``inputs``: kind -> paths in ``classifiers``'
    order) and human affect files (``human``: classifier -> paths) and write the CSV."""
    from affalign.io import write_csv

    tables = {
        name: {kind: pl.read_parquet(paths[position]) for kind, paths in inputs.items()}
        for position, name in enumerate(classifiers)
    }
    for name, paths in human.items():
        tables[name]["human"] = pl.concat([pl.read_parquet(path) for path in paths], how="diagonal")
    table = robustness_table(tables, alpha, confidence, seed, label_map)
    write_csv(table, output)
    return table
