"""Simulated studies with a known truth for the align stage's inference, in one run.

Prints (1) the bias of the plug-in and the corrected alignment against the cell size (a
perfect model — posts drawn from the group's own distribution — and models at a true
alignment of 0.9 and 0.8, at 24, 50, 200 and 1,000 posts against a group cell of 500 posts),
beside the noise ceiling the stage reports and, for comparison, equal-n subsampling to 24
posts a side; (2) the coverage grid of the stage's 95 % intervals (percentile intervals of
bootstrap replicates of the corrected score) by posts per side and true alignment, beside
the published percentile interval of the plug-in score; (3) false-positive rates at α = 0.05:
the liberal-tendency test (sign-flip over topics of corrected differences) with identical
distributions and unequal group sizes, beside the Wilcoxon test of plug-in differences; the
one-sided below-baseline test for a perfect model when the two groups are identical; the
permutation test of a model drawn from the group.

Populations: 8 labels, each post carries each label independently (multi-label, as the
classifiers give); a second population is mixed in to reach a target true alignment
(1 − JSD of the normalised label rates). Every cell is scored with the stage's own functions.

Usage: ``python benchmarks/bench_coverage.py [--studies 200] [--replicates 200] [--seed 7]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from scipy.stats import wilcoxon

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affalign.align.comparisons import SIGN_FLIP_DRAWS, Counting, post_vectors  # noqa: E402
from affalign.align.divergence import alignment as population_alignment  # noqa: E402
from affalign.align.inference import corrected_alignment, pattern_moments, plugin_alignment  # noqa: E402
from affalign.align.resampling import random_split, resample_pattern_counts  # noqa: E402
from affalign.stats import percentile_interval, sign_flip_test  # noqa: E402

LABELS = 8
BASE = np.array([0.30, 0.12, 0.20, 0.25, 0.15, 0.08, 0.18, 0.22])
OTHER = np.array([0.05, 0.35, 0.05, 0.10, 0.40, 0.25, 0.04, 0.10])
MIRROR = BASE[[1, 0, 3, 2, 5, 4, 7, 6]]
FLAGS = (np.arange(2**LABELS)[:, None] >> np.arange(LABELS)[None, :]) & 1 > 0
FEATURES = pattern_moments(post_vectors(FLAGS, Counting()))


def pattern_probabilities(rates: np.ndarray) -> np.ndarray:
    return np.prod(np.where(FLAGS, rates, 1 - rates), axis=1)


def rates_at(target: float) -> np.ndarray:
    """Label rates whose population alignment with BASE is ``target`` (bisection on a mixture)."""
    if target >= 1:
        return BASE
    low, high = 0.0, 1.0
    for _ in range(60):
        mix = (low + high) / 2
        if population_alignment(BASE, (1 - mix) * BASE + mix * OTHER) > target:
            low = mix
        else:
            high = mix
    return (1 - low) * BASE + low * OTHER


def cell(rng, rates, n):
    return rng.multinomial(n, pattern_probabilities(rates))


def bootstrap(rng, posts, replicates):
    return resample_pattern_counts(posts, int(posts.sum()), replicates, rng) @ FEATURES


def ceiling(rng, group_posts, group_reps, n_model, replicates):
    perfect = resample_pattern_counts(group_posts, n_model, replicates, rng) @ FEATURES
    return np.nanmean(corrected_alignment(perfect, group_reps)), np.nanmean(
        plugin_alignment(perfect, group_reps)
    )


def subsampled(rng, posts_a, posts_b, size, draws=50):
    a = np.stack([rng.multivariate_hypergeometric(posts_a, size) for _ in range(draws)]) @ FEATURES
    b = np.stack([rng.multivariate_hypergeometric(posts_b, size) for _ in range(draws)]) @ FEATURES
    return float(np.nanmean(plugin_alignment(a, b)))


def bias_table(rng, studies, replicates):
    print("\n(1) Mean score against model cell size (group cell: 500 posts; 8 labels)")
    print("true  n_model | plug-in  ceiling | corrected  ceiling_corr | subsampled to 24")
    for target in (1.0, 0.9, 0.8):
        model_rates = rates_at(target)
        for n_model in (24, 50, 200, 1000):
            values = []
            for _ in range(studies):
                model, group = cell(rng, model_rates, n_model), cell(rng, BASE, 500)
                group_reps = bootstrap(rng, group, replicates)
                ceiling_corrected, ceiling_plugin = ceiling(rng, group, group_reps, n_model, replicates)
                m, g = model @ FEATURES, group @ FEATURES
                plugin, corrected = plugin_alignment(m, g), corrected_alignment(m, g)
                values.append(
                    (
                        plugin,
                        ceiling_plugin,
                        corrected,
                        ceiling_corrected,
                        subsampled(rng, model, group, 24, 10),
                    )
                )
            means = np.nanmean(np.array(values, dtype=float), axis=0)
            print(f"{target:.2f} {n_model:7d}  | {means[0]:.3f}    {means[1]:.3f}   | {means[2]:.3f}      "
                  f"{means[3]:.3f}         | {means[4]:.3f}")  # fmt: skip


def coverage_grid(rng, studies, replicates):
    sizes = (50, 100, 200, 500, 1000, 2000)
    truths = (0.6, 0.75, 0.85, 0.9, 0.95, 0.98, 1.0)
    print(f"\n(2) Coverage of nominal 95 % intervals, {studies} studies per cell, {replicates} replicates")
    print("    stage interval (percentile of corrected replicates) / published percentile of plug-in")
    print("posts/side " + " ".join(f"  true {t:.2f} " for t in truths))
    for n in sizes:
        line = []
        for target in truths:
            model_rates = rates_at(target)
            hits = np.zeros(2)
            for _ in range(studies):
                model, group = cell(rng, model_rates, n), cell(rng, BASE, n)
                model_reps, group_reps = bootstrap(rng, model, replicates), bootstrap(rng, group, replicates)
                low, high = percentile_interval(corrected_alignment(model_reps, group_reps), 0.95)
                hits[0] += low <= target <= high
                low, high = percentile_interval(plugin_alignment(model_reps, group_reps), 0.95)
                hits[1] += low <= target <= high
            line.append(f"{hits[0] / studies:5.2f}/{hits[1] / studies:4.2f}")
        print(f"{n:10d} " + "   ".join(line))


def tendency_rates(rng, studies, topics):
    print(f"\n(3a) Liberal tendency test, {studies} studies, α = 0.05 (rejection rate; truth: no tendency)")
    print("scenario                    sizes (model/lib/con) topics | sign-flip corrected | Wilcoxon plug-in")
    scenarios = {
        "identical distributions": (BASE, BASE, BASE),
        "equidistant, groups differ": ((BASE + MIRROR) / 2, BASE, MIRROR),
    }
    for name, (model_rates, liberal_rates, conservative_rates) in scenarios.items():
        for sizes in ((200, 1000, 200), (24, 100, 30)):
            for count in topics:
                rejected = np.zeros(2)
                for _ in range(studies):
                    corrected, plugin = [], []
                    for _ in range(count):
                        m = cell(rng, model_rates, sizes[0]) @ FEATURES
                        lib = cell(rng, liberal_rates, sizes[1]) @ FEATURES
                        con = cell(rng, conservative_rates, sizes[2]) @ FEATURES
                        corrected.append(corrected_alignment(m, lib) - corrected_alignment(m, con))
                        plugin.append(plugin_alignment(m, lib) - plugin_alignment(m, con))
                    rejected[0] += sign_flip_test(corrected, SIGN_FLIP_DRAWS, rng).p_value < 0.05
                    rejected[1] += wilcoxon(plugin).pvalue < 0.05
                print(f"{name:27s} {sizes!s:21s} {count:6d} | {rejected[0] / studies:19.3f} | "
                      f"{rejected[1] / studies:.3f}")  # fmt: skip


def below_baseline_rates(rng, studies, replicates):
    print(f"\n(3b) Perfect model reported below the baseline (one-sided test, α = 0.05), {studies} topics")
    print("groups      sizes (model/group/other) | reported below | corrected − ceiling (mean, se)")
    for identical in (True, False):
        other_rates = BASE if identical else MIRROR
        for sizes in ((24, 100, 30), (24, 30, 100), (200, 1000, 200), (2000, 200, 1000)):
            below, gaps = 0, []
            for _ in range(studies):
                model, group, other = (
                    cell(rng, BASE, sizes[0]),
                    cell(rng, BASE, sizes[1]),
                    cell(rng, other_rates, sizes[2]),
                )
                m_reps, g_reps, o_reps = (bootstrap(rng, c, replicates) for c in (model, group, other))
                m, g, o = model @ FEATURES, group @ FEATURES, other @ FEATURES
                gap = corrected_alignment(m, g) - corrected_alignment(g, o)
                replicate_gaps = corrected_alignment(m_reps, g_reps) - corrected_alignment(g_reps, o_reps)
                finite = replicate_gaps[np.isfinite(replicate_gaps)]
                p_value = (1 + np.sum(finite >= 0)) / (1 + finite.size)
                below += bool(np.isfinite(gap) and p_value < 0.05)
                gaps.append(corrected_alignment(m, g) - ceiling(rng, group, g_reps, sizes[0], replicates)[0])
            gaps = np.array(gaps, dtype=float)
            label = "identical" if identical else "different"
            print(f"{label:11s} {sizes!s:25s} | {below / studies:14.3f} | "
                  f"{np.nanmean(gaps):+.4f} ({np.nanstd(gaps) / np.sqrt(len(gaps)):.4f})")  # fmt: skip


def permutation_rates(rng, studies, permutations):
    print(f"\n(3c) Permutation test, model drawn from the group, {studies} cells, α = 0.05")
    for sizes in ((24, 14), (24, 100), (200, 1000)):
        rejected = 0
        for _ in range(studies):
            model, group = cell(rng, BASE, sizes[0]), cell(rng, BASE, sizes[1])
            observed = plugin_alignment(model @ FEATURES, group @ FEATURES)
            pooled = model + group
            first = random_split(pooled, sizes[0], permutations, rng) @ FEATURES
            null = plugin_alignment(first, (pooled @ FEATURES)[None] - first)
            p_value = (1 + np.sum(null <= observed + 1e-12)) / (1 + permutations)
            rejected += p_value < 0.05
        print(f"sizes (model/group) {sizes!s:12s}: rejects {rejected / studies:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    began = time.perf_counter()
    bias_table(rng, args.studies, args.replicates)
    coverage_grid(rng, args.studies, args.replicates)
    tendency_rates(rng, max(2 * args.studies, 400), (10, 26))
    below_baseline_rates(rng, max(2 * args.studies, 400), args.replicates)
    permutation_rates(rng, max(2 * args.studies, 400), 199)
    print(f"\n{time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
