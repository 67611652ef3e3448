"""The paired sign-flip (permutation) test of a zero mean difference.

Each sample holds paired differences ``d_i = a_i − b_i`` (per topic, per question, ...).
Under the null hypothesis the two conditions are exchangeable within each pair, so each
difference is as likely to have either sign (valid for independent pairs whose difference
is symmetric about 0 under the null). Statistic: ``|Σ d_i|`` (equivalently the absolute
mean, for a fixed sample). Two-sided.

* Exact: with ``2^n ≤ max(permutations, EXACT_SIGN_VECTORS)`` every sign vector is
  enumerated and ``p = #{|T*| ≥ |T|} / 2^n``; its smallest value is ``2 / 2^n``.
* Otherwise ``permutations`` random sign vectors give ``p = (1 + #{|T*| ≥ |T|}) /
  (1 + permutations)``, never below ``1 / (1 + permutations)``.
* Ties between a permuted and the observed statistic count as "as extreme" up to
  floating-point noise of the sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# Enumerate every sign vector up to this many (15 values), or up to the number of random
# sign vectors asked for when that is larger: enumeration is exact and, this small, cheap.
EXACT_SIGN_VECTORS = 2**15
# Random sign vectors are drawn in blocks of this many rows (bounded memory).
PERMUTATION_CHUNK = 1024
TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class SignFlipResult:
    """One sample's test: its mean difference, p-value, smallest attainable p and size."""

    mean: float
    p_value: float
    min_attainable_p: float
    n: int


def _largest_exact_n(permutations: int) -> int:
    """The largest ``n`` with ``2^n ≤ max(permutations, EXACT_SIGN_VECTORS)``."""
    return int(max(int(permutations), EXACT_SIGN_VECTORS)).bit_length() - 1


def min_attainable_sign_flip_p(n: int, permutations: int) -> float:
    """Smallest two-sided p-value a sign-flip test over ``n`` values can give (NaN for none)."""
    if n < 1:
        return float("nan")
    exact = 2.0 ** (1 - n)
    return exact if n <= _largest_exact_n(permutations) else max(exact, 1.0 / (permutations + 1))


def _all_sign_vectors(n: int) -> np.ndarray:
    """Every vector of ``n`` signs: (2^n × n)."""
    bits = (np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n)[None, :]) & 1
    return 1.0 - 2.0 * bits


def sign_flip_p_values(
    differences: ArrayLike, permutations: int, rng: np.random.Generator | int
) -> np.ndarray:
    """Two-sided sign-flip p-value per row of (rows × pairs) differences (a 1-D array is
    one row); NaN marks a pair a row leaves out.

    Rows tested with random sign vectors share one set of them (a pair a row leaves out
    counts 0 there, so its sign does not matter), drawn from ``rng`` (a Generator, or a
    seed for one). A row without any value gets NaN (no test); a row whose differences are
    all 0 gets 1.
    """
    differences = np.atleast_2d(np.asarray(differences, dtype=float))
    present = np.isfinite(differences)
    filled = np.where(present, differences, 0.0)
    observed = np.abs(filled.sum(axis=1))
    tolerance = TIE_TOLERANCE * np.maximum(1.0, np.abs(filled).sum(axis=1))
    sizes = present.sum(axis=1)
    p_values = np.where(sizes > 0, 1.0, np.nan)
    testable = np.any(filled != 0, axis=1)
    exact = testable & (sizes <= _largest_exact_n(permutations))
    # Rows of one size share their sign vectors: one product per block of such rows.
    for size in np.unique(sizes[exact]):
        rows = np.flatnonzero(exact & (sizes == size))
        signs = _all_sign_vectors(int(size))
        for block in np.array_split(rows, max(1, rows.size * signs.shape[0] // 2**22)):
            values = np.stack([filled[row][present[row]] for row in block])
            permuted = np.abs(signs @ values.T)
            p_values[block] = np.mean(permuted >= observed[block] - tolerance[block], axis=0)
    sampled = np.flatnonzero(testable & ~exact)
    if sampled.size:
        rng = np.random.default_rng(rng)
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


def sign_flip_test(
    differences: ArrayLike, permutations: int, rng: np.random.Generator | int
) -> SignFlipResult:
    """The sign-flip test of one sample of differences (non-finite values left out), with
    its mean, size and smallest attainable p-value (all NaN, n = 0, without a value)."""
    values = np.asarray(differences, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return SignFlipResult(float("nan"), float("nan"), float("nan"), 0)
    p_value = float(sign_flip_p_values(values, permutations, rng)[0])
    return SignFlipResult(
        float(values.mean()), p_value, min_attainable_sign_flip_p(values.size, permutations), values.size
    )
