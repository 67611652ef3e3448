"""The shared statistics of affalign.stats (used by the align and opinions stages):
percentile and Wilson intervals, the sign-flip test, Holm and Benjamini–Hochberg.

scipy is the oracle (permutation_test, false_discovery_control, binomtest); Holm is computed
by hand (statsmodels is not installed). The level of the sign-flip test is checked on
seeded simulations whose truth is known."""

import numpy as np
import pytest
from scipy.stats import binomtest, false_discovery_control, permutation_test

from affalign.stats import (
    EXACT_SIGN_VECTORS,
    benjamini_hochberg,
    holm,
    min_attainable_sign_flip_p,
    percentile_interval,
    sign_flip_p_values,
    sign_flip_test,
    wilson_interval,
)


def exact_p(values):
    """scipy's exact two-sided paired permutation p-value of a zero mean."""
    return permutation_test(
        (values,),
        lambda x, axis: np.mean(x, axis=axis),
        permutation_type="samples",
        alternative="two-sided",
        n_resamples=np.inf,
    ).pvalue


# --- percentile intervals --------------------------------------------------------------------


def test_percentile_interval_ignores_undefined_replicates():
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 0.5) == pytest.approx((1.5, 2.5))
    assert np.isnan(percentile_interval(np.array([np.nan]), 0.9)[0])


def test_percentile_bounds_match_numpy_and_tolerate_empty_rows():
    rng = np.random.default_rng(2)
    replicates = rng.normal(size=(2, 500))
    replicates[1] = np.nan
    low, high = percentile_interval(replicates, 0.9)
    assert low[0] == pytest.approx(np.percentile(replicates[0], 5))
    assert high[0] == pytest.approx(np.percentile(replicates[0], 95))
    assert np.isnan(low[1]) and np.isnan(high[1])


def test_percentile_interval_is_vectorised_over_leading_axes():
    rng = np.random.default_rng(3)
    replicates = rng.normal(size=(3, 4, 200))
    replicates[0, 1, :17] = np.nan  # undefined replicates in one sample
    replicates[2, 3, 5] = np.inf
    low, high = percentile_interval(replicates, 0.8)
    assert low.shape == high.shape == (3, 4)
    tail = (1 - 0.8) / 2 * 100  # 9.999999999999998: the same percentile as the function's
    for index in np.ndindex(3, 4):
        finite = replicates[index][np.isfinite(replicates[index])]
        assert (low[index], high[index]) == tuple(np.percentile(finite, [tail, 100 - tail]))
    # One sample (1-D) gives two scalars; no replicates at all gives NaN.
    single = percentile_interval(replicates[1, 2], 0.8)
    assert np.ndim(single[0]) == 0 and single == (low[1, 2], high[1, 2])
    assert percentile_interval(replicates[0, 1], 0.8) == (low[0, 1], high[0, 1])  # with NaN
    assert np.isnan(percentile_interval(np.zeros((2, 0)), 0.9)[1]).all()
    with pytest.raises(ValueError, match="last axis"):
        percentile_interval(1.0, 0.9)


# --- Wilson ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("successes", "trials"), [(0, 10), (3, 10), (10, 10), (1, 3)])
def test_wilson_interval_is_scipys(successes, trials):
    expected = binomtest(successes, trials).proportion_ci(0.95, method="wilson")
    assert wilson_interval(successes, trials, 0.95) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_wilson_interval_without_trials_is_undefined():
    assert np.isnan(wilson_interval(0, 0, 0.95)).all()


# --- the sign-flip test ----------------------------------------------------------------------


def test_sign_flip_test_against_scipys_permutation_test():
    rng = np.random.default_rng(6)
    values = rng.normal(0.1, 0.2, size=9)
    ours = sign_flip_test(values, 9999, rng)
    reference = permutation_test(
        (values,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
    )
    assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert ours.mean == pytest.approx(values.mean()) and ours.n == 9
    # All of one sign: the smallest attainable p, 2 / 2^n.
    assert sign_flip_test(np.abs(values), 9999, rng).p_value == pytest.approx(2 / 2**9)
    assert min_attainable_sign_flip_p(3, 9999) == 0.25
    assert min_attainable_sign_flip_p(26, 9999) == pytest.approx(1e-4)
    many = sign_flip_test(np.abs(rng.normal(size=26)), 9999, rng)  # random sign vectors beyond 15 values
    assert many.p_value == pytest.approx(1e-4) and many.min_attainable_p == pytest.approx(1e-4)
    assert np.isnan(sign_flip_test([np.nan], 9999, rng).p_value)


@pytest.mark.parametrize("n", [2, 4, 9])
def test_exact_sign_flip_p_values_equal_scipy(n):
    rng = np.random.default_rng(n)
    differences = rng.normal(0.3, 1.0, size=(5, n))
    found = sign_flip_p_values(differences, 10_000, 0)
    for row, p_value in zip(differences, found, strict=True):
        assert p_value == pytest.approx(exact_p(row))


def test_sign_flip_enumerates_up_to_15_values_or_the_permutations_asked_for():
    rng = np.random.default_rng(14)
    fifteen = rng.normal(0.2, 1.0, size=15)
    # 2^15 sign vectors are enumerated even when fewer random ones are asked for.
    assert EXACT_SIGN_VECTORS == 2**15 and min_attainable_sign_flip_p(15, 200) == 2.0**-14
    assert sign_flip_p_values(fifteen, 200, 0)[0] == pytest.approx(exact_p(fifteen))
    sixteen = rng.normal(0.2, 1.0, size=16)
    # Beyond that, exact only when 2^n is at most the permutations asked for.
    assert sign_flip_p_values(sixteen, 2**16, 0)[0] == pytest.approx(exact_p(sixteen))
    assert min_attainable_sign_flip_p(16, 2**16) == 2.0**-15
    sampled = sign_flip_p_values(sixteen, 999, 0)[0]
    assert sampled * 1000 == pytest.approx(round(sampled * 1000))  # (1 + k) / (1 + 999)
    assert min_attainable_sign_flip_p(16, 999) == pytest.approx(1e-3)


def test_random_sign_vectors_estimate_the_exact_p_value():
    rng = np.random.default_rng(15)
    values = rng.normal(0.15, 1.0, size=17)
    exact = sign_flip_p_values(values, 2**17, 0)[0]
    assert exact == pytest.approx(exact_p(values))
    sampled = sign_flip_p_values(values, 20_000, 3)[0]
    assert 0.02 < exact < 0.98  # a p-value the check can tell apart from its bounds
    assert abs(sampled - exact) < 4 * np.sqrt(exact * (1 - exact) / 20_000) + 1e-4
    # Seeded: the same seed (or Generator state) gives the same p-value.
    assert sign_flip_p_values(values, 20_000, 3)[0] == sampled
    assert sign_flip_p_values(values, 20_000, np.random.default_rng(3))[0] == sampled


def test_one_sample_and_a_row_of_a_matrix_give_the_same_p_value():
    rng = np.random.default_rng(16)
    rows = rng.normal(0.2, 1.0, size=(4, 8))
    rows[1, [0, 5]] = np.nan  # left out
    matrix = sign_flip_p_values(rows, 10_000, 0)
    for row, p_value in zip(rows, matrix, strict=True):
        result = sign_flip_test(row, 10_000, 0)
        assert result.p_value == pytest.approx(p_value) and result.n == np.isfinite(row).sum()
        assert result.p_value == pytest.approx(exact_p(row[np.isfinite(row)]))


def test_sign_flip_test_without_differences_and_its_smallest_p():
    assert sign_flip_p_values(np.zeros((1, 30)), 500, 0)[0] == 1.0
    # Every difference positive over 30 questions: no random sign vector is as extreme.
    assert sign_flip_p_values(np.ones((1, 30)), 500, 0)[0] == pytest.approx(1 / 501)
    # NaN questions are left out: with one question left the exact p is 1.
    assert sign_flip_p_values(np.array([[np.nan, 2.0, np.nan]]), 500, 0)[0] == 1.0
    # No question at all: no test (NaN, so it stays out of a Holm/BH family).
    assert np.isnan(sign_flip_p_values(np.full((1, 3), np.nan), 500, 0)[0])
    empty = sign_flip_test([], 500, 0)
    assert empty.n == 0 and np.isnan(empty.p_value) and np.isnan(empty.min_attainable_p)


def test_sign_flip_test_holds_its_level_and_detects_a_shift():
    rng = np.random.default_rng(5)
    # 400 studies of 40 questions; differences symmetric about 0 but skewed in size.
    null = rng.choice((-1.0, 1.0), size=(400, 40)) * rng.exponential(0.05, size=(400, 40))
    rejected = np.mean(sign_flip_p_values(null, 2000, 1) < 0.05)
    assert rejected <= 0.07
    shifted = rng.normal(0.03, 0.05, size=(100, 40))
    assert np.mean(sign_flip_p_values(shifted, 2000, 1) < 0.05) >= 0.9


# --- Holm and Benjamini–Hochberg -------------------------------------------------------------


def holm_by_hand(p_values):
    """Holm's step-down procedure, written out: the i-th smallest of m p-values (1-based)
    becomes max over j ≤ i of min(1, (m − j + 1) p_(j))."""
    finite = [(p, i) for i, p in enumerate(p_values) if np.isfinite(p)]
    ordered = sorted(finite)
    m = len(ordered)
    adjusted = [np.nan] * len(p_values)
    running = 0.0
    for j, (p, i) in enumerate(ordered, start=1):
        running = max(running, min(1.0, (m - j + 1) * p))
        adjusted[i] = running
    return np.array(adjusted)


def test_holm_and_benjamini_hochberg():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    assert np.allclose(holm(p)[[0, 1, 2, 4]], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm(p)[3]) and np.isnan(benjamini_hochberg(p)[3])
    finite = p[np.isfinite(p)]
    assert np.allclose(benjamini_hochberg(p)[np.isfinite(p)], false_discovery_control(finite, method="bh"))


def test_adjustments_match_their_oracles_on_random_families_of_any_shape():
    rng = np.random.default_rng(9)
    for size in (1, 2, 7, 40):
        p = rng.uniform(0, 0.2, size=size) ** 2
        p[rng.random(size) < 0.2] = np.nan
        finite = np.isfinite(p)
        assert np.allclose(holm(p), holm_by_hand(p), equal_nan=True)
        if finite.any():
            assert np.allclose(benjamini_hochberg(p)[finite], false_discovery_control(p[finite], method="bh"))
        assert (holm(p)[finite] >= benjamini_hochberg(p)[finite] - 1e-15).all()
        assert (benjamini_hochberg(p)[finite] >= p[finite]).all()
    # A (columns × rows) array is one family, adjusted in place.
    table = rng.uniform(0, 0.1, size=(2, 5))
    assert np.allclose(holm(table), holm_by_hand(table.ravel()).reshape(2, 5))
    assert np.allclose(benjamini_hochberg(table), false_discovery_control(table.ravel()).reshape(2, 5))
    assert holm(np.array([])).size == 0 and np.isnan(holm([np.nan])).all()
