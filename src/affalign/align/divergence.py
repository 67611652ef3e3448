"""The one Jensen–Shannon kernel of the align stage, and neighbour smoothing.

Conventions: the last axis of an array holds a count (or probability) vector over one
ordered label set; vectors are normalised to sum to 1 before comparison. The
Jensen–Shannon *distance* is the square root of the Jensen–Shannon divergence with
logarithms in base 2, so it lies in [0, 1]; ``alignment = 1 − distance`` therefore also
lies in [0, 1] (1 = identical). ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` is
the test oracle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

# Plutchik's wheel of the eight primary emotions, in order around the wheel.
PLUTCHIK_WHEEL = ("joy", "trust", "fear", "surprise", "sadness", "disgust", "anger", "anticipation")


def jensen_shannon_distance(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """Base-2 Jensen–Shannon distance along the last axis of two broadcastable count arrays.

    Each vector is normalised first; a vector whose counts sum to zero has no distribution
    and gives NaN.
    """
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    p_total = p.sum(axis=-1, keepdims=True)
    q_total = q.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / p_total
        q = q / q_total
        m = 0.5 * (p + q)
        left = np.where(p > 0, p * np.log2(p / m), 0.0)
        right = np.where(q > 0, q * np.log2(q / m), 0.0)
    divergence = 0.5 * left.sum(axis=-1) + 0.5 * right.sum(axis=-1)
    # Rounding can leave a tiny negative divergence for identical inputs.
    distance = np.sqrt(np.clip(divergence, 0.0, 1.0))
    undefined = (p_total[..., 0] <= 0) | (q_total[..., 0] <= 0)
    return np.where(undefined, np.nan, distance)


def alignment(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """Affective alignment ``1 − JSD(p, q)`` along the last axis, in [0, 1] (NaN where undefined)."""
    return 1.0 - jensen_shannon_distance(p, q)


def plutchik_smoothing_matrix(labels: Sequence[str], weight: float) -> np.ndarray:
    """Column-stochastic matrix that moves ``weight`` of each wheel emotion's mass to each of
    its two neighbours on Plutchik's wheel: ``p'_i = (1 − 2w) p_i + w p_{i−1} + w p_{i+1}``.

    Labels that are not wheel emotions keep their mass; a wheel emotion whose neighbour is
    not among ``labels`` keeps that share. Identical distributions stay identical.

    This is neighbour smoothing, not the Plutchik emotion adjustment (PEA) of He et al.
    Applied to both sides it is one Markov kernel on both distributions, so by the
    data-processing inequality the divergence can only shrink: smoothing raises alignment
    by construction, and smoothed scores compare only with smoothed scores.
    """
    if not 0.0 <= weight <= 0.5:
        raise ValueError("the smoothing weight must lie in [0, 0.5]")
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.eye(len(labels))
    for position, emotion in enumerate(PLUTCHIK_WHEEL):
        if emotion not in index:
            continue
        source = index[emotion]
        for neighbour in (
            PLUTCHIK_WHEEL[(position - 1) % len(PLUTCHIK_WHEEL)],
            PLUTCHIK_WHEEL[(position + 1) % len(PLUTCHIK_WHEEL)],
        ):
            if neighbour in index:
                matrix[source, source] -= weight
                matrix[index[neighbour], source] += weight
    return matrix


def smooth(counts: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a smoothing matrix to (… × labels) counts or distributions (mass is preserved)."""
    return np.asarray(counts, dtype=float) @ matrix.T
