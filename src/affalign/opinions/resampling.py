"""Question-level resampling and tests for positional alignment (pure functions, no I/O).

Conventions
-----------
* The unit of resampling is the **question**: a representativeness is a mean over questions,
  and its uncertainty here is that of the question sample (which questions the survey
  happened to ask). The human survey distributions and the model's distributions are taken
  as fixed: Pew waves weigh thousands of respondents per question and the model's
  distribution is read exactly from its log-probabilities, so the question sample is the
  dominant source of variation between studies of the same topics.
* ``values`` are (cells × questions) arrays; NaN marks a question a cell does not have.
* ``counts`` are (replicates × questions) bootstrap counts: how often each question is drawn
  in a resample of the question set with replacement (each row sums to the number of
  questions). Using the same ``counts`` for every cell makes differences between cells
  paired: a replicate of ``a − b`` is the replicate of ``a`` minus that of ``b``.
* Intervals are percentile intervals over replicates at the given confidence level.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

PERMUTATION_CHUNK = 1024
# Ties between a permuted and the observed statistic are counted as "as extreme" up to
# floating-point noise of the sums.
TIE_TOLERANCE = 1e-12


def question_resamples(n_questions: int, replicates: int, seed: int) -> np.ndarray:
    """(replicates × n_questions) counts of each question in bootstrap resamples of the
    question set (with replacement, same size), seeded."""
    if n_questions <= 0 or replicates <= 0:
        return np.zeros((max(replicates, 0), max(n_questions, 0)), dtype=np.int64)
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_questions, np.full(n_questions, 1.0 / n_questions), size=replicates)


def resampled_means(values: ArrayLike, counts: np.ndarray) -> np.ndarray:
    """(cells × replicates) means over questions of each cell in each resample.

    A question a cell lacks (NaN) is left out of that cell's mean; a replicate that draws
    none of a cell's questions is NaN.
    """
    values = np.atleast_2d(np.asarray(values, dtype=float))
    present = np.isfinite(values)
    weights = np.asarray(counts, dtype=float).T
    totals = np.where(present, values, 0.0) @ weights
    drawn = present.astype(float) @ weights
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(drawn > 0, totals / np.where(drawn > 0, drawn, 1.0), np.nan)


def percentile_bounds(replicates: ArrayLike, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the percentile interval of the finite replicates (NaN, NaN if none)."""
    replicates = np.atleast_2d(np.asarray(replicates, dtype=float))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low = np.full(replicates.shape[0], np.nan)
    high = np.full(replicates.shape[0], np.nan)
    usable = np.isfinite(replicates).any(axis=1) if replicates.shape[1] else np.zeros(len(low), bool)
    if usable.any():
        bounds = np.nanpercentile(replicates[usable], [tail, 100.0 - tail], axis=1)
        low[usable], high[usable] = bounds[0], bounds[1]
    return low, high


def sign_flip_p_values(differences: ArrayLike, permutations: int, seed: int) -> np.ndarray:
    """Two-sided paired sign-flip (permutation) test of a zero mean difference, per row.

    Each row holds one comparison's per-question differences ``a_q − b_q`` (NaN: question
    left out). Under the null hypothesis the two conditions are exchangeable within each
    question, so each difference is as likely to have either sign; the statistic is
    ``|Σ_q d_q|``. With ``2^n ≤ permutations`` (``n`` the row's questions) every sign
    vector is enumerated and ``p = #{|T*| ≥ |T|} / 2^n`` is exact; otherwise ``permutations``
    random sign vectors (seeded) give ``p = (1 + #{|T*| ≥ |T|}) / (1 + permutations)``.
    A row without questions, or whose differences are all 0, gets p = 1.
    """
    differences = np.atleast_2d(np.asarray(differences, dtype=float))
    present = np.isfinite(differences)
    filled = np.where(present, differences, 0.0)
    observed = np.abs(filled.sum(axis=1))
    tolerance = TIE_TOLERANCE * np.maximum(1.0, np.abs(filled).sum(axis=1))
    sizes = present.sum(axis=1)
    p_values = np.ones(differences.shape[0])
    testable = np.any(filled != 0, axis=1)
    exact = testable & (2.0**sizes <= permutations)
    for row in np.flatnonzero(exact):
        d = filled[row][present[row]]
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        p_values[row] = float(np.mean(np.abs(signs @ d) >= observed[row] - tolerance[row]))
    sampled = np.flatnonzero(testable & ~exact)
    if sampled.size:
        # One set of random sign vectors for every sampled row (a question left out of a
        # row is 0 there, so its sign does not matter).
        rng = np.random.default_rng(seed)
        extreme = np.zeros(sampled.size, dtype=np.int64)
        left = permutations
        while left > 0:
            size = min(left, PERMUTATION_CHUNK)
            signs = rng.choice((-1.0, 1.0), size=(size, filled.shape[1]))
            permuted = np.abs(signs @ filled[sampled].T)
            extreme += np.sum(permuted >= observed[sampled] - tolerance[sampled], axis=0)
            left -= size
        p_values[sampled] = (1 + extreme) / (1 + permutations)
    return p_values


def slope_through_origin(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """OLS slope of ``y`` on ``x`` without intercept, ``Σ x·y / Σ x²``, over the last axis
    (pairs with a NaN left out; NaN when no pair is left or ``Σ x² = 0``)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    usable = np.isfinite(x) & np.isfinite(y)
    xy = np.where(usable, x * y, 0.0).sum(axis=-1)
    xx = np.where(usable, x * x, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(xx > 0, xy / np.where(xx > 0, xx, 1.0), np.nan)


def best_groups(scores: Mapping[str, float], tolerance: float = TIE_TOLERANCE) -> set[str]:
    """The groups with the highest finite score (several when tied within ``tolerance``)."""
    finite = {group: score for group, score in scores.items() if np.isfinite(score)}
    if not finite:
        return set()
    top = max(finite.values())
    return {group for group, score in finite.items() if score >= top - tolerance}


def consistency(overall: Mapping[str, float], by_topic: Sequence[Mapping[str, float]]) -> float:
    """Santurkar et al.'s consistency: the fraction of topics on which the group a model
    represents best is the group it represents best over all questions.

    ``overall`` maps each group to its representativeness over all questions, ``by_topic``
    holds the same per topic. Ties count as agreement when the two sets of best groups
    share a group. Topics without any finite score are left out; NaN if none is left.
    """
    best = best_groups(overall)
    agreements = [bool(best & best_groups(topic)) for topic in by_topic if best_groups(topic)]
    return float(np.mean(agreements)) if agreements and best else float("nan")
