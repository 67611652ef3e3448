"""Distances between label distributions and the alignment score built on them.

Conventions: distributions are non-negative vectors over the same ordered label set;
they are normalised to sum to 1 before comparison. The Jensen–Shannon *distance* is the
square root of the Jensen–Shannon divergence with logarithms in base 2, so it lies in
[0, 1]; ``alignment = 1 − distance`` therefore also lies in [0, 1] (1 = identical).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def normalise(counts: ArrayLike) -> np.ndarray:
    """Scale a vector of non-negative counts to sum to 1.

    Raises ``ValueError`` for negative entries or an all-zero vector (no distribution).
    """
    vector = np.asarray(counts, dtype=float)
    if vector.ndim != 1:
        raise ValueError(f"expected a 1-D vector of counts, got shape {vector.shape}")
    if np.any(vector < 0) or not np.all(np.isfinite(vector)):
        raise ValueError("counts must be finite and non-negative")
    total = vector.sum()
    if total <= 0:
        raise ValueError("counts sum to zero: there is no distribution to normalise")
    return vector / total


def _kl_base2(p: np.ndarray, m: np.ndarray) -> float:
    support = p > 0
    return float(np.sum(p[support] * np.log2(p[support] / m[support])))


def jensen_shannon_distance(p: ArrayLike, q: ArrayLike) -> float:
    """Jensen–Shannon distance (log base 2) between two count or probability vectors.

    Both vectors are normalised first. Equals
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``; 0 for identical
    distributions, 1 for distributions with disjoint support.
    """
    p_norm, q_norm = normalise(p), normalise(q)
    if p_norm.shape != q_norm.shape:
        raise ValueError(f"label sets differ in length: {p_norm.shape} vs {q_norm.shape}")
    mixture = 0.5 * (p_norm + q_norm)
    divergence = 0.5 * _kl_base2(p_norm, mixture) + 0.5 * _kl_base2(q_norm, mixture)
    # Rounding can leave a tiny negative divergence for identical inputs.
    return float(np.sqrt(min(max(divergence, 0.0), 1.0)))


def alignment(p: ArrayLike, q: ArrayLike) -> float:
    """Affective alignment ``1 − JSD(p, q)`` with the base-2 Jensen–Shannon distance, in [0, 1]."""
    return 1.0 - jensen_shannon_distance(p, q)
