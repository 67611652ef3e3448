"""Adjusted p-values for a family of tests: Holm (family-wise error) and
Benjamini–Hochberg (false discovery rate).

NaN entries (tests that could not be run) stay NaN and do not count in the family.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike


def _adjust_finite(p_values: ArrayLike, adjust_sorted: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``adjust_sorted`` (ascending p-values in, adjusted ones out) to the finite
    entries, capped at 1, and put them back in place (any shape)."""
    p = np.asarray(p_values, dtype=float)
    flat = p.ravel()
    adjusted = np.full(flat.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(flat))
    if finite.size:
        order = finite[np.argsort(flat[finite], kind="stable")]
        adjusted[order] = np.minimum(adjust_sorted(flat[order]), 1.0)
    return adjusted.reshape(p.shape)


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm's step-down adjusted p-values: the i-th smallest of m becomes
    ``max_{j ≤ i} (m − j + 1) · p_(j)``."""

    def step_down(ordered: np.ndarray) -> np.ndarray:
        return np.maximum.accumulate((ordered.size - np.arange(ordered.size)) * ordered)

    return _adjust_finite(p_values, step_down)


def benjamini_hochberg(p_values: ArrayLike) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values: the i-th smallest of m becomes
    ``min_{j ≥ i} m · p_(j) / j``."""

    def step_up(ordered: np.ndarray) -> np.ndarray:
        scaled = ordered * ordered.size / np.arange(1, ordered.size + 1)
        return np.minimum.accumulate(scaled[::-1])[::-1]

    return _adjust_finite(p_values, step_up)
