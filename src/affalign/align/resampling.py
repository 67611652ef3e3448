"""Resampling and tests for alignment scores (pure functions, no I/O).

Conventions
-----------
* A cell is one source (a model under a prompt type, or a human group) on one issue ×
  topic. A post's labels form a *pattern* (the set of labels it carries); resampling
  posts with replacement is a multinomial draw over the cell's patterns, so a bootstrap
  replicate costs O(patterns), not O(posts).
* Scores are ``1 − JSD`` with the base-2 Jensen–Shannon distance; replicates whose label
  counts sum to zero have no distribution and score NaN (ignored by the intervals).
* Intervals are percentile intervals over replicates at the given confidence level. The
  plug-in distance is biased upwards in small samples (so alignment downwards, most for
  nearly identical distributions); the interval shows the spread of the estimate, it does
  not correct that bias.
* Liberal tendency = alignment with liberals − alignment with conservatives, averaged over
  topics, with a Wilcoxon signed-rank test of the per-topic differences (two-sided).
* Steerability towards a group = alignment with the group under the prompt steered towards
  it − alignment with the group under the default prompt, averaged over topics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import wilcoxon


def label_patterns(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct label patterns of a (posts × labels) boolean array and how many posts have each."""
    flags = np.asarray(flags, dtype=bool)
    if flags.shape[0] == 0:
        return np.zeros((0, flags.shape[1]), dtype=bool), np.zeros(0, dtype=np.int64)
    patterns, counts = np.unique(flags, axis=0, return_counts=True)
    return patterns, counts


def bootstrap_label_counts(
    patterns: np.ndarray, pattern_posts: np.ndarray, replicates: int, rng: np.random.Generator
) -> np.ndarray:
    """Label counts of ``replicates`` resamples (with replacement) of a cell's posts.

    Returns a (replicates × labels) array. Equivalent to drawing ``n`` posts with
    replacement from the cell, where ``n`` is its number of posts.
    """
    n = int(pattern_posts.sum())
    if n == 0:
        return np.zeros((replicates, patterns.shape[1]))
    draws = rng.multinomial(n, pattern_posts / n, size=replicates)
    return draws @ patterns.astype(float)


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of the finite values (NaN, NaN if none)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def liberal_tendency(liberal: Sequence[float], conservative: Sequence[float]) -> dict[str, float]:
    """Mean per-topic difference (liberal − conservative) and its Wilcoxon signed-rank test.

    Topics where either score is undefined are left out. The p-value is NaN with fewer than
    two usable topics or when every difference is zero.
    """
    lib = np.asarray(liberal, dtype=float)
    con = np.asarray(conservative, dtype=float)
    usable = np.isfinite(lib) & np.isfinite(con)
    differences = lib[usable] - con[usable]
    result = {
        "tendency": float(differences.mean()) if differences.size else float("nan"),
        "n_topics": int(differences.size),
        "wilcoxon_statistic": float("nan"),
        "p_value": float("nan"),
    }
    if differences.size >= 2 and np.any(differences != 0):
        test = wilcoxon(differences, zero_method="wilcox", alternative="two-sided")
        result["wilcoxon_statistic"] = float(test.statistic)
        result["p_value"] = float(test.pvalue)
    return result
