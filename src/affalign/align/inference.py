"""Size-aware inference for alignment scores: a bias-corrected alignment and a two-stage
bootstrap of means over topics (the tests, adjustments and intervals they feed are the
stage-independent ones of :mod:`affalign.stats`).

Pure functions (arrays in, numbers out, no I/O). Conventions:

* A cell's posts are summarised by *post vectors*: the row each post adds to the cell's label
  counts (whole counting: 1 for each label it carries; fractional counting: 1/k for each of
  its k labels; a ``none`` bin adds a column that is 1 for posts without a label). ``S`` is the
  sum of a post vector. A cell's *moments* are the sums over its posts of
  ``[y, y², y·S, S, S², 1]`` (``3K + 3`` numbers for ``K`` labels), so the moments of any
  resample of a cell are ``pattern counts @ pattern_moments(vectors)``: O(patterns) per
  resample. Leading axes of moment arrays broadcast (cells, replicates).
* ``divergence`` is the Jensen–Shannon divergence in bits, the square of the distance of
  :func:`affalign.align.divergence.jensen_shannon_distance` (the one kernel, used here);
  ``alignment = 1 − √divergence``.
* The plug-in divergence of two samples is biased upwards by about
  ``(K − 1) / (8 ln 2) · (1/n_a + 1/n_b)`` for identical single-label distributions, so the
  plug-in alignment depends on the cells' sizes. :func:`divergence_bias` estimates that bias
  for any post vectors with the second-order delta method (the ratio estimator ``p = Σy / ΣS``
  and the Hessian of the divergence, from the cell's own moments, with ``n − 1``
  denominators); :func:`corrected_alignment` is ``1 − sign(D̃)·√|D̃|`` with
  ``D̃ = divergence − bias``. The signed root keeps the estimate unbiased where the two
  distributions are (nearly) identical, so it can exceed 1 by sampling noise there, as a
  bias-corrected R² can fall below 0; clipping it would bring the size dependence back.
* Intervals on levels come from :func:`centred_replicates`. In the bootstrap world the
  "population" is the observed cells, whose divergence is the *plug-in* one, so replicates of
  the corrected score centre near the plug-in value, below the corrected estimate, most near
  identity; percentiles of those replicates miss their own estimate once averaged over topics.
  The replicates are instead moved, on the divergence scale, by the distance between the
  corrected estimate and the resampled population's divergence (``D̃* + D̃ − D_plug-in``), then
  mapped to alignment: a shifted percentile interval. It keeps the right skew of the
  divergence's sampling distribution (reflecting it, as a basic interval does, gave intervals
  reaching far above the estimate for the same coverage).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from affalign.align.divergence import jensen_shannon_distance

LN2 = float(np.log(2.0))


def pattern_moments(vectors: ArrayLike) -> np.ndarray:
    """Per-pattern moment rows ``[y, y², y·S, S, S², 1]`` of (patterns × labels) post vectors."""
    y = np.asarray(vectors, dtype=float)
    total = y.sum(axis=-1, keepdims=True)
    return np.concatenate([y, y * y, y * total, total, total * total, np.ones_like(total)], axis=-1)


def _labels_in(moments: np.ndarray) -> int:
    width = moments.shape[-1]
    if (width - 3) % 3:
        raise ValueError(f"moment rows have {width} columns; expected 3 × labels + 3")
    return (width - 3) // 3


def label_sums(moments: ArrayLike) -> np.ndarray:
    """The label counts (sums of the post vectors) held in moment rows."""
    moments = np.asarray(moments, dtype=float)
    return moments[..., : _labels_in(moments)]


def plugin_divergence(moments_a: ArrayLike, moments_b: ArrayLike) -> np.ndarray:
    """Plug-in Jensen–Shannon divergence (bits) of the two cells' label counts (NaN if undefined)."""
    return jensen_shannon_distance(label_sums(moments_a), label_sums(moments_b)) ** 2


def plugin_alignment(moments_a: ArrayLike, moments_b: ArrayLike) -> np.ndarray:
    """The published score ``1 − JSD`` of the two cells' label counts."""
    return 1.0 - jensen_shannon_distance(label_sums(moments_a), label_sums(moments_b))


def _ratio_terms(moments: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distribution ``p``, variance of ``p̂`` and bias of ``p̂`` (ratio estimator) per label."""
    k = _labels_in(moments)
    sum_y, sum_y2, sum_ys = moments[..., :k], moments[..., k : 2 * k], moments[..., 2 * k : 3 * k]
    sum_s, sum_s2, n = moments[..., 3 * k], moments[..., 3 * k + 1], moments[..., 3 * k + 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_s = (sum_s / n)[..., None]
        p = sum_y / sum_s[..., None]
        scale = mean_s**2 * (n[..., None] - 1.0)
        # p̂ − p ≈ mean of (y − S·p) / s: its variance, and the ratio estimator's own bias.
        variance = (sum_y2 - 2.0 * p * sum_ys + p * p * sum_s2[..., None]) / n[..., None] / scale
        bias = -((sum_ys - p * sum_s2[..., None]) / n[..., None]) / scale
    return p, variance, bias


def divergence_bias(moments_a: ArrayLike, moments_b: ArrayLike) -> np.ndarray:
    """Second-order estimate of ``E[plug-in divergence] − divergence`` (bits) for two
    independent samples with these moments: gradient · bias of ``p̂`` plus half the Hessian
    (diagonal: ``1/(2p) − 1/(4m)``) times the variance of ``p̂``, on each side."""
    moments_a = np.asarray(moments_a, dtype=float)
    moments_b = np.asarray(moments_b, dtype=float)
    p, var_p, bias_p = _ratio_terms(moments_a)
    q, var_q, bias_q = _ratio_terms(moments_b)
    m = 0.5 * (p + q)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_p = np.where(p > 0, np.log(p / m), 0.0)
        log_q = np.where(q > 0, np.log(q / m), 0.0)
        curve_p = np.where(p > 0, 1.0 / (2.0 * p) - 1.0 / (4.0 * m), 0.0)
        curve_q = np.where(q > 0, 1.0 / (2.0 * q) - 1.0 / (4.0 * m), 0.0)
        terms = (
            0.5 * log_p * np.where(p > 0, bias_p, 0.0)
            + 0.5 * log_q * np.where(q > 0, bias_q, 0.0)
            + 0.5 * curve_p * np.where(p > 0, var_p, 0.0)
            + 0.5 * curve_q * np.where(q > 0, var_q, 0.0)
        )
    return terms.sum(axis=-1) / LN2


def signed_root(value: ArrayLike) -> np.ndarray:
    value = np.asarray(value, dtype=float)
    return np.sign(value) * np.sqrt(np.abs(value))


def corrected_alignment(moments_a: ArrayLike, moments_b: ArrayLike) -> np.ndarray:
    """Size-corrected alignment ``1 − sign(D̃)·√|D̃|``, ``D̃`` = plug-in divergence − its
    estimated bias (NaN where a side has no labelled post or fewer than two posts)."""
    return 1.0 - signed_root(corrected_divergence(moments_a, moments_b))


def corrected_divergence(moments_a: ArrayLike, moments_b: ArrayLike) -> np.ndarray:
    """``D̃`` = plug-in divergence − its estimated bias (bits; can be negative by noise)."""
    return plugin_divergence(moments_a, moments_b) - divergence_bias(moments_a, moments_b)


def centred_replicates(
    point_a: ArrayLike, point_b: ArrayLike, replicates_a: ArrayLike, replicates_b: ArrayLike
) -> np.ndarray:
    """Bootstrap replicates of the corrected alignment, centred on the estimate.

    ``point_*`` are the observed cells' moments, ``replicates_*`` the moments of their
    resamples (leading axes broadcast). Each replicate is ``1 − sign·√|D̃ + (D̃* − D)|``, with
    ``D̃`` the corrected divergence of the observed cells, ``D̃*`` that of the resamples and
    ``D`` the plug-in divergence of the observed cells (the divergence of the population the
    resamples are drawn from): the bootstrap's error, added to the estimate. Their percentile
    interval covers the true alignment near identity, where the percentile interval of the raw
    replicates lies below its own estimate.
    """
    estimate = corrected_divergence(point_a, point_b)
    population = plugin_divergence(point_a, point_b)
    error = corrected_divergence(replicates_a, replicates_b) - np.asarray(population)[..., None]
    return 1.0 - signed_root(np.asarray(estimate)[..., None] + error)


def hierarchical_means(replicates: ArrayLike, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Two-stage bootstrap of a mean over topics: each draw resamples topics with replacement,
    then takes for each drawn topic one of its post-level replicates at random.

    ``replicates`` is (topics × replicates); rows without a finite replicate are left out.
    Returns ``draws`` means (NaN-free unless no topic is usable).
    """
    values = np.asarray(replicates, dtype=float)
    usable = np.isfinite(values).any(axis=1)
    values = values[usable]
    if values.shape[0] == 0:
        return np.full(draws, np.nan)
    topics, columns = values.shape
    chosen_topics = rng.integers(0, topics, size=(draws, topics))
    chosen_columns = rng.integers(0, columns, size=(draws, topics))
    picked = values[chosen_topics, chosen_columns]
    # An undefined replicate (no labelled post in that resample) falls back to the topic's mean.
    fallback = np.nanmean(values, axis=1)[chosen_topics]
    picked = np.where(np.isfinite(picked), picked, fallback)
    return picked.mean(axis=1)
