"""Intervals: percentile intervals of resampling replicates, and the Wilson interval."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm


def percentile_interval(replicates: ArrayLike, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval at ``confidence`` of the replicates along the last axis.

    Leading axes are independent samples: a (rows × replicates) array gives one interval
    per row, a 1-D array one interval (two numpy scalars). Non-finite replicates (an
    undefined score in that resample) are left out; a sample without a finite replicate, or
    without any, gets (NaN, NaN). Percentiles use numpy's default (linear) interpolation.
    """
    values = np.asarray(replicates, dtype=float)
    if values.ndim == 0:
        raise ValueError("percentile_interval needs replicates along a last axis")
    finite = np.isfinite(values)
    usable = finite.any(axis=-1)
    low = np.full(values.shape[:-1], np.nan)
    high = np.full(values.shape[:-1], np.nan)
    if usable.any():
        tail = (1.0 - confidence) / 2.0 * 100.0
        chosen = values[usable]
        if finite[usable].all():
            bounds = np.percentile(chosen, [tail, 100.0 - tail], axis=-1)
        else:
            bounds = np.nanpercentile(np.where(finite[usable], chosen, np.nan), [tail, 100.0 - tail], axis=-1)
        low[usable], high[usable] = bounds[0], bounds[1]
    return low[()], high[()]


def wilson_interval(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a proportion (NaN, NaN without trials)."""
    if trials <= 0:
        return float("nan"), float("nan")
    z = float(norm.ppf(0.5 + confidence / 2.0))
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    # With no or only successes the bound is exactly 0 or 1 (rounding would leave 1e-17).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return float(low), float(high)
