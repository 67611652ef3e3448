"""Size-aware inference: the corrected score, its ceiling, intervals and tests.

Unit checks use scipy as the oracle; the statistical claims of the corrected scores are checked with
seeded simulations whose truth is known (8 labels, multi-label posts):
(a) the tendency test holds its level with identical distributions and unequal group sizes,
(b) the intervals cover as stated, (c) a perfect model is not reported below the baseline
more often than the level, and its corrected score matches its ceiling.
"""

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import hypergeom, wilcoxon

from affalign.align.comparisons import SIGN_FLIP_DRAWS
from affalign.align.inference import (
    corrected_alignment,
    divergence_bias,
    hierarchical_means,
    pattern_moments,
    plugin_alignment,
    plugin_divergence,
)
from affalign.align.resampling import random_split, resample_pattern_counts
from affalign.align.scoring import Counting, post_vectors
from affalign.stats import percentile_interval, sign_flip_test

LABELS = 8
FLAGS = (np.arange(2**LABELS)[:, None] >> np.arange(LABELS)[None, :]) & 1 > 0
FEATURES = pattern_moments(post_vectors(FLAGS, Counting()))
BASE = np.array([0.30, 0.12, 0.20, 0.25, 0.15, 0.08, 0.18, 0.22])
OTHER = np.array([0.05, 0.35, 0.05, 0.10, 0.40, 0.25, 0.04, 0.10])
MIRROR = BASE[[1, 0, 3, 2, 5, 4, 7, 6]]


def probabilities(rates):
    return np.prod(np.where(FLAGS, rates, 1 - rates), axis=1)


def cells(rng, rates, n, size):
    """Pattern counts of ``size`` cells of ``n`` posts (multi-label posts, independent labels)."""
    return rng.multinomial(n, probabilities(rates), size=size).astype(float)


def population_alignment(rates_a, rates_b):
    return 1 - jensenshannon(rates_a, rates_b, base=2)


def rates_at(target):
    """A mixture of BASE and OTHER whose population alignment with BASE is ``target``."""
    low, high = 0.0, 1.0
    for _ in range(60):
        mix = (low + high) / 2
        low, high = (
            (mix, high) if population_alignment(BASE, (1 - mix) * BASE + mix * OTHER) > target else (low, mix)
        )
    return (1 - low) * BASE + low * OTHER


# --- the estimator -------------------------------------------------------------------------


def test_plugin_scores_are_scipys_and_moments_of_resamples_are_linear():
    rng = np.random.default_rng(1)
    a, b = cells(rng, BASE, 60, 1)[0], cells(rng, OTHER, 80, 1)[0]
    sums_a, sums_b = a @ FLAGS, b @ FLAGS
    expected = 1 - jensenshannon(sums_a, sums_b, base=2)
    assert plugin_alignment(a @ FEATURES, b @ FEATURES) == pytest.approx(expected, abs=1e-12)
    assert plugin_divergence(a @ FEATURES, b @ FEATURES) == pytest.approx((1 - expected) ** 2, abs=1e-12)
    # n and the label sums sit in the moment row.
    assert (a @ FEATURES)[-1] == 60 and np.allclose((a @ FEATURES)[:LABELS], sums_a)


def test_bias_of_identical_single_label_cells_is_the_closed_form():
    # Single-label posts, the same observed shares on both sides: the delta-method bias is
    # (K − 1) / 8 · (1/(n_a − 1) + 1/(n_b − 1)) nats.
    k = 5
    vectors = np.eye(k)
    a = np.array([10, 20, 30, 25, 15])
    b = 2 * a
    moments_a, moments_b = a @ pattern_moments(vectors), b @ pattern_moments(vectors)
    expected = (k - 1) / 8 * (1 / (a.sum() - 1) + 1 / (b.sum() - 1)) / np.log(2)
    assert divergence_bias(moments_a, moments_b) == pytest.approx(expected, rel=1e-12)
    assert plugin_divergence(moments_a, moments_b) == pytest.approx(0.0, abs=1e-15)
    # Here the corrected divergence is −bias: the corrected score goes above 1.
    assert corrected_alignment(moments_a, moments_b) == pytest.approx(1 + np.sqrt(expected), rel=1e-9)


@pytest.mark.parametrize("target", [1.0, 0.9, 0.7])
def test_bias_estimate_matches_the_simulated_bias_of_the_plugin_divergence(target):
    rng = np.random.default_rng(2)
    rates = rates_at(target) if target < 1 else BASE
    a, b = cells(rng, BASE, 60, 20000) @ FEATURES, cells(rng, rates, 150, 20000) @ FEATURES
    truth = (1 - population_alignment(BASE, rates)) ** 2
    simulated_bias = plugin_divergence(a, b).mean() - truth
    estimated_bias = np.nanmean(divergence_bias(a, b))
    assert simulated_bias > 0.005  # the plug-in divergence is biased upwards...
    assert estimated_bias == pytest.approx(simulated_bias, rel=0.08)  # ...by about what is estimated


def test_corrected_score_does_not_depend_on_cell_size():
    # A perfect model (posts drawn from the group's distribution) at 24 to 1,000 posts:
    # the published score climbs with the cell size, the corrected one stays at 1.
    rng = np.random.default_rng(3)
    group = cells(rng, BASE, 500, 3000) @ FEATURES
    plugin, corrected = [], []
    for n in (24, 50, 200, 1000):
        model = cells(rng, BASE, n, 3000) @ FEATURES
        plugin.append(np.nanmean(plugin_alignment(model, group)))
        corrected.append(np.nanmean(corrected_alignment(model, group)))
    assert plugin[-1] - plugin[0] > 0.1
    assert np.allclose(corrected, 1.0, atol=0.01)


def test_fractional_counting_and_none_bin_vectors():
    flags = np.array([[1, 1, 0], [0, 0, 0], [0, 1, 0]], dtype=bool)
    assert post_vectors(flags, Counting(fractional=True)).tolist() == [[0.5, 0.5, 0], [0, 0, 0], [0, 1, 0]]
    assert post_vectors(flags, Counting(none_bin=True))[:, -1].tolist() == [0, 1, 0]
    smoothing = np.full((3, 3), 1 / 3)
    assert post_vectors(flags, Counting(none_bin=True), smoothing)[1].tolist() == [0, 0, 0, 1]


# --- resampling ------------------------------------------------------------------------------


def test_random_split_is_a_hypergeometric_draw():
    rng = np.random.default_rng(4)
    pooled = np.array([7, 2, 1, 5])
    first = random_split(pooled, 6, 40000, rng)
    assert (first.sum(axis=1) == 6).all() and (first <= pooled).all()
    law = hypergeom(pooled.sum(), pooled[0], 6)
    assert first[:, 0].mean() == pytest.approx(law.mean(), abs=0.02)
    assert first[:, 0].var() == pytest.approx(law.var(), rel=0.03)
    # The larger side is drawn as the complement of the smaller: the same law.
    second = random_split(pooled, 9, 40000, rng)
    assert (pooled - second)[:, 0].mean() == pytest.approx(law.mean(), abs=0.02)


def test_resampled_pattern_counts_have_multinomial_moments():
    rng = np.random.default_rng(5)
    posts = np.array([6, 3, 1])
    draws = resample_pattern_counts(posts, 20, 50000, rng)
    assert (draws.sum(axis=1) == 20).all()
    shares = posts / posts.sum()
    assert np.allclose(draws.mean(axis=0), 20 * shares, atol=0.03)
    assert np.allclose(draws.var(axis=0), 20 * shares * (1 - shares), rtol=0.03)


# --- tests and adjustments -------------------------------------------------------------------


def test_hierarchical_interval_is_wider_than_the_topic_only_interval():
    rng = np.random.default_rng(7)
    topic_means = rng.normal(0.8, 0.05, size=8)
    replicates = topic_means[:, None] + rng.normal(0, 0.05, size=(8, 200))
    two_stage = hierarchical_means(replicates, 4000, rng)
    topics_only = hierarchical_means(topic_means[:, None], 4000, rng)
    assert two_stage.mean() == pytest.approx(topic_means.mean(), abs=0.005)
    assert two_stage.std() > 1.1 * topics_only.std()


# --- done when: seeded simulations with a known truth -----------------------------------------


def tendency_rejections(rng, rates, sizes, studies, topics):
    model = cells(rng, rates[0], sizes[0], (studies, topics)) @ FEATURES
    liberal = cells(rng, rates[1], sizes[1], (studies, topics)) @ FEATURES
    conservative = cells(rng, rates[2], sizes[2], (studies, topics)) @ FEATURES
    corrected = corrected_alignment(model, liberal) - corrected_alignment(model, conservative)
    plugin = plugin_alignment(model, liberal) - plugin_alignment(model, conservative)
    ours = np.mean([sign_flip_test(row, SIGN_FLIP_DRAWS, rng).p_value < 0.05 for row in corrected])
    published = np.mean([wilcoxon(row).pvalue < 0.05 for row in plugin])
    return ours, published


@pytest.mark.parametrize("sizes", [(24, 100, 30), (200, 1000, 200)])
def test_a_tendency_test_holds_its_level_with_unequal_group_sizes(sizes):
    rng = np.random.default_rng(8)
    ours, published = tendency_rejections(rng, (BASE, BASE, BASE), sizes, studies=800, topics=10)
    assert ours <= 0.07
    assert published >= 0.3  # the published Wilcoxon test on plug-in scores does not


def test_a_tendency_test_holds_its_level_when_the_model_sits_between_different_groups():
    rng = np.random.default_rng(9)
    ours, _ = tendency_rejections(rng, ((BASE + MIRROR) / 2, BASE, MIRROR), (200, 1000, 200), 800, 10)
    assert ours <= 0.07


def test_a_tendency_test_finds_a_real_tendency():
    rng = np.random.default_rng(10)
    ours, _ = tendency_rejections(rng, (BASE, BASE, MIRROR), (24, 100, 30), studies=100, topics=10)
    assert ours >= 0.75  # a test that never rejects would pass the level checks above


@pytest.mark.parametrize("target", [0.85, 0.95])
def test_b_intervals_cover_at_200_posts_per_side(target):
    rng = np.random.default_rng(11)
    rates, studies, replicates = rates_at(target), 500, 200
    model, group = cells(rng, rates, 200, studies), cells(rng, BASE, 200, studies)
    covered, published = [], []
    for m, g in zip(model, group, strict=True):
        model_reps = resample_pattern_counts(m, 200, replicates, rng) @ FEATURES
        group_reps = resample_pattern_counts(g, 200, replicates, rng) @ FEATURES
        low, high = percentile_interval(corrected_alignment(model_reps, group_reps), 0.95)
        covered.append(low <= target <= high)
        low, high = percentile_interval(plugin_alignment(model_reps, group_reps), 0.95)
        published.append(low <= target <= high)
    assert np.mean(covered) >= 0.9
    assert np.mean(published) < np.mean(covered) - 0.1  # the plug-in percentile interval does not


def below_baseline_share(rng, other_rates, sizes, topics, replicates=100):
    """Share of topics on which a perfect model (posts drawn from the group) is reported below
    the baseline by the one-sided bootstrap test at 0.05, as the align stage decides it."""
    model, group, other = (
        cells(rng, r, n, topics) for r, n in zip((BASE, BASE, other_rates), sizes, strict=True)
    )
    below = 0
    for m, g, o in zip(model, group, other, strict=True):
        m_reps, g_reps, o_reps = (
            resample_pattern_counts(c, n, replicates, rng) @ FEATURES
            for c, n in zip((m, g, o), sizes, strict=True)
        )
        gap = corrected_alignment(m @ FEATURES, g @ FEATURES) - corrected_alignment(
            g @ FEATURES, o @ FEATURES
        )
        replicate_gaps = corrected_alignment(m_reps, g_reps) - corrected_alignment(g_reps, o_reps)
        finite = replicate_gaps[np.isfinite(replicate_gaps)]
        below += bool(np.isfinite(gap) and (1 + np.sum(finite >= 0)) / (1 + finite.size) < 0.05)
    return below / topics


@pytest.mark.parametrize(
    ("other", "sizes"),
    [("identical", (24, 100, 30)), ("identical", (200, 1000, 200)), ("different", (24, 30, 100))],
)
def test_c_a_perfect_model_is_not_reported_below_the_baseline(other, sizes):
    rng = np.random.default_rng(12)
    share = below_baseline_share(rng, BASE if other == "identical" else MIRROR, sizes, topics=200)
    assert share <= 0.05


def test_c_a_perfect_models_corrected_score_sits_at_its_ceiling():
    rng = np.random.default_rng(13)
    studies, draws = 2000, 40
    model, group = cells(rng, BASE, 24, studies), cells(rng, BASE, 100, studies)
    scores = corrected_alignment(model @ FEATURES, group @ FEATURES)
    ceilings = []
    for g in group:
        perfect = resample_pattern_counts(g, 24, draws, rng) @ FEATURES
        replicate = resample_pattern_counts(g, 100, draws, rng) @ FEATURES
        ceilings.append(np.nanmean(corrected_alignment(perfect, replicate)))
    gap = np.nanmean(scores) - np.mean(ceilings)
    assert abs(gap) <= 0.01
    # The published score's ceiling is just as close to the published score of a perfect model.
    assert np.nanmean(plugin_alignment(model @ FEATURES, group @ FEATURES)) < 0.85
