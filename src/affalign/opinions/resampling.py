"""Question-level resampling, the steerability slope and consistency for positional alignment
(pure functions, no I/O; intervals and the sign-flip test are :mod:`affalign.stats`).

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
* Intervals are percentile intervals over replicates at the given confidence level
  (:func:`affalign.stats.percentile_interval`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

# Groups whose scores differ by less than this are tied for best (floating-point noise).
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
