import numpy as np
import pytest
from scipy.stats import wilcoxon

from affalign.align.divergence import (
    PLUTCHIK_WHEEL,
    jensen_shannon_distance,
    plutchik_smoothing_matrix,
    smooth,
)
from affalign.align.resampling import bootstrap_label_counts, label_patterns, liberal_tendency
from affalign.stats import percentile_interval


def test_patterns_and_bootstrap_counts():
    flags = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    patterns, counts = label_patterns(flags)
    assert counts.sum() == 5 and len(patterns) == 4
    draws = bootstrap_label_counts(patterns, counts, 2000, np.random.default_rng(1))
    assert draws.shape == (2000, 2)
    # The mean over resamples equals the observed label counts (3 and 2).
    np.testing.assert_allclose(draws.mean(axis=0), [3, 2], atol=0.1)


def interval_width(n_posts: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(5)
    model = rng.random((n_posts, 4)) < [0.5, 0.3, 0.2, 0.1]
    human = rng.random((n_posts, 4)) < [0.2, 0.3, 0.4, 0.3]
    observed = 1 - jensen_shannon_distance(model.sum(0)[None], human.sum(0)[None])[0]
    mp, mc = label_patterns(model)
    hp, hc = label_patterns(human)
    replicates = 1 - jensen_shannon_distance(
        bootstrap_label_counts(mp, mc, 1000, rng), bootstrap_label_counts(hp, hc, 1000, rng)
    )
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
    same = smooth(counts, matrix)
    assert jensen_shannon_distance(smoothed[None], same[None])[0] == pytest.approx(0.0)
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
