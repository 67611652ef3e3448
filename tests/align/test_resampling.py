import numpy as np
import pytest
from scipy.stats import wilcoxon

from affalign.align.divergence import (
    PLUTCHIK_WHEEL,
    jensen_shannon_distance,
    plutchik_smoothing_matrix,
    smooth,
)
from affalign.align.resampling import MULTINOMIAL_COST, liberal_tendency, resample_pattern_counts
from affalign.stats import percentile_interval


def label_counts(flags: np.ndarray, rng: np.random.Generator, replicates: int) -> np.ndarray:
    """Bootstrap label counts of a cell the way the align stage draws them: the posts'
    distinct label patterns, their pattern counts resampled at the cell's own size."""
    patterns, posts = np.unique(flags, axis=0, return_counts=True)
    return resample_pattern_counts(posts, int(posts.sum()), replicates, rng) @ patterns.astype(float)


@pytest.mark.parametrize(
    "posts",
    [
        np.array([1, 2, 1, 1, 3, 1, 2, 1]),  # few posts per pattern: posts drawn by index
        np.array([300, 120, 60, 20]),  # many: numpy's multinomial
    ],
)
def test_the_bootstrap_draws_the_cell_at_its_own_size_with_multinomial_moments(posts):
    n = int(posts.sum())
    assert (n > MULTINOMIAL_COST * posts.size) == (posts.max() > 3)  # both ways are exercised
    draws = resample_pattern_counts(posts, n, 40000, np.random.default_rng(3))
    assert draws.shape == (40000, posts.size) and (draws.sum(axis=1) == n).all()
    shares = posts / n
    np.testing.assert_allclose(draws.mean(axis=0), n * shares, rtol=0.02, atol=0.02)
    np.testing.assert_allclose(draws.var(axis=0), n * shares * (1 - shares), rtol=0.05)


def test_the_bootstrap_of_an_empty_cell_is_all_zero():
    assert not resample_pattern_counts(np.array([0, 0]), 0, 5, np.random.default_rng(1)).any()


def test_bootstrap_label_counts_average_to_the_observed_counts():
    flags = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    draws = label_counts(flags, np.random.default_rng(1), 4000)
    assert draws.shape == (4000, 2)
    np.testing.assert_allclose(draws.mean(axis=0), flags.sum(axis=0), atol=0.05)


def interval_width(n_posts: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(5)
    model = rng.random((n_posts, 4)) < [0.5, 0.3, 0.2, 0.1]
    human = rng.random((n_posts, 4)) < [0.2, 0.3, 0.4, 0.3]
    observed = 1 - jensen_shannon_distance(model.sum(0)[None], human.sum(0)[None])[0]
    replicates = 1 - jensen_shannon_distance(label_counts(model, rng, 1000), label_counts(human, rng, 1000))
    low, high = percentile_interval(replicates, 0.95)
    return observed, low, high


def test_interval_covers_the_score_and_narrows_with_more_posts():
    observed, low, high = interval_width(200)
    assert low <= observed <= high
    _, low_big, high_big = interval_width(5000)
    assert high_big - low_big < (high - low) / 2


def test_liberal_tendency_sign_and_test():
    liberal = [0.8, 0.7, 0.9, 0.85, 0.75, 0.8, 0.9, 0.7]
    conservative = [0.6, 0.65, 0.7, 0.6, 0.7, 0.65, 0.6, 0.62]
    result = liberal_tendency(liberal, conservative)
    assert result["tendency"] == pytest.approx(np.mean(np.subtract(liberal, conservative)))
    assert result["tendency"] > 0 and result["n_topics"] == 8
    assert result["p_value"] == pytest.approx(wilcoxon(np.subtract(liberal, conservative)).pvalue)
    assert result["p_value"] < 0.05
    flipped = liberal_tendency(conservative, liberal)
    assert flipped["tendency"] < 0 and flipped["p_value"] == pytest.approx(result["p_value"])
    assert np.isnan(liberal_tendency([0.5], [0.4])["p_value"])


def test_plutchik_smoothing_keeps_mass_and_identical_distributions():
    labels = ["anger", "anticipation", "joy", "love", "trust", "fear"]
    matrix = plutchik_smoothing_matrix(labels, 0.1)
    counts = np.array([5.0, 0, 3, 2, 0, 1])
    smoothed = smooth(counts, matrix)
    assert smoothed.sum() == pytest.approx(counts.sum())
    # Anticipation sits between anger and joy on the wheel: it receives 0.1 of each.
    assert smoothed[1] == pytest.approx(0.1 * 5 + 0.1 * 3)
    # Anger keeps the share it would give disgust, which is not among the labels.
    assert smoothed[0] == pytest.approx(5 * 0.9)
    assert smoothed[3] == pytest.approx(2.0)  # love is not a wheel emotion
    # Identical distributions (counts of different sizes) stay identical.
    doubled = smooth(2 * counts, matrix)
    assert jensen_shannon_distance(smoothed[None], doubled[None])[0] == pytest.approx(0.0, abs=1e-7)
    assert set(PLUTCHIK_WHEEL) >= {"anger", "joy", "trust", "fear"}


def test_plutchik_smoothing_can_only_raise_alignment():
    # Neighbour smoothing of both sides is one Markov kernel: by the data-processing
    # inequality the divergence shrinks, so alignment never falls (why it is not the paper's PEA).
    labels = list(PLUTCHIK_WHEEL)
    matrix = plutchik_smoothing_matrix(labels, 0.2)
    rng = np.random.default_rng(8)
    p, q = rng.dirichlet(np.ones(8), size=500), rng.dirichlet(np.ones(8), size=500)
    raw = jensen_shannon_distance(p, q)
    smoothed = jensen_shannon_distance(smooth(p, matrix), smooth(q, matrix))
    assert (smoothed <= raw + 1e-12).all() and (smoothed < raw - 0.01).mean() > 0.5
