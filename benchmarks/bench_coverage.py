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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from scipy.stats import wilcoxon

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affalign.align.comparisons import SIGN_FLIP_DRAWS, bootstrap_comparisons  # noqa: E402
from affalign.align.divergence import alignment as population_alignment  # noqa: E402
from affalign.align.inference import (  # noqa: E402
    centred_replicates,
    corrected_alignment,
    pattern_moments,
    plugin_alignment,
)
from affalign.align.resampling import random_split, resample_pattern_counts  # noqa: E402
from affalign.align.scoring import BootstrapSettings, Counting, post_vectors  # noqa: E402
from affalign.align.simulation import LABELS as SIM_LABELS  # noqa: E402
from affalign.align.simulation import Populations, simulated_studies  # noqa: E402
from affalign.stats import sign_flip_test  # noqa: E402

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


GRID_TRUTHS = (1.00, 0.98, 0.95, 0.90, 0.80)
GRID_MODEL_POSTS = (24, 50, 200, 2000)
GRID_GROUP_POSTS = (30, 300, 1000)
GRID_TOPICS = (3, 5, 10)
PROMPT_TYPES = ("default", "liberal", "conservative")
# Each reported interval: its table, its estimate column, its bounds and its true value
# (``None``: the study's true alignment; groups are identical, so the baseline is 1 and
# tendency, steerability and differential steerability are 0).
INTERVALS = {
    "cell": ("alignment", "alignment_corrected", "corrected_low", "corrected_high", None),
    "baseline": ("baseline", "alignment_corrected", "corrected_low", "corrected_high", 1.0),
    "model-level": ("model_summary", "alignment_corrected", "corrected_low", "corrected_high", None),
    "gap": ("model_summary", "baseline_gap", "gap_low", "gap_high", "gap"),
    "tendency": ("tendency", "tendency_corrected", "corrected_low", "corrected_high", 0.0),
    "steerability": ("steerability", "steerability_corrected", "corrected_low", "corrected_high", 0.0),
    "differential": ("steerability", "differential", "differential_low", "differential_high", 0.0),
}


def grid_point(arguments: tuple) -> tuple:
    """Coverage and estimate-outside share of every interval for one grid point, end to end
    through the stage's ``bootstrap_comparisons`` (each study is one issue)."""
    multi_label, topics, group_posts, model_posts, truth, studies, replicates, seed = arguments
    rng = np.random.default_rng([seed, int(multi_label), topics, group_posts, model_posts, int(truth * 1000)])
    model, human = simulated_studies(
        rng,
        studies,
        topics,
        model_posts,
        group_posts,
        truth,
        PROMPT_TYPES,
        Populations(multi_label=multi_label),
    )
    settings = BootstrapSettings(replicates, 0.95, seed, permutations=0)
    tables = bootstrap_comparisons(model, human, list(SIM_LABELS), ["liberal", "conservative"], settings)
    found = {}
    for name, (table, estimate, low, high, target) in INTERVALS.items():
        frame = tables[table].drop_nulls([estimate, low, high])
        value = truth if target is None else (truth - 1.0 if target == "gap" else target)
        lows, highs = frame[low].to_numpy(), frame[high].to_numpy()
        estimates = frame[estimate].to_numpy()
        covered = float(np.mean((lows <= value + 1e-12) & (value - 1e-12 <= highs)))
        outside = float(np.mean((estimates < lows - 1e-12) | (estimates > highs + 1e-12)))
        found[name] = (covered, outside, frame.height)
    return multi_label, topics, group_posts, model_posts, truth, found


def coverage_grid(studies: int, replicates: int, seed: int, workers: int, quick: bool, only: dict) -> None:
    truths, model_sizes, group_sizes, topic_counts = (
        GRID_TRUTHS,
        GRID_MODEL_POSTS,
        GRID_GROUP_POSTS,
        GRID_TOPICS,
    )
    modes = (True, False)
    if quick:
        truths, model_sizes, group_sizes, topic_counts, modes = (1.0, 0.9), (24, 200), (300,), (5,), (True,)
    # A part of the grid (the whole grid takes hours on two cores).
    truths = only.get("truths") or truths
    model_sizes = only.get("model_posts") or model_sizes
    group_sizes = only.get("group_posts") or group_sizes
    topic_counts = only.get("topics") or topic_counts
    modes = tuple(label == "multi" for label in only["labels"]) if only.get("labels") else modes
    print(
        f"\n(2) Coverage of the stage's nominal 95 % intervals, end to end through bootstrap_comparisons: "
        f"{studies} studies per grid point, {replicates} replicates; "
        "cov = share covering the truth, out = share whose estimate lies outside its own interval"
    )
    points = [
        (multi, topics, n_group, n_model, truth, studies, replicates, seed)
        for multi in modes
        for topics in topic_counts
        for n_group in group_sizes
        for n_model in model_sizes
        for truth in truths
    ]
    header = "labels  topics n_group n_model  true | " + " | ".join(f"{name:>13s}" for name in INTERVALS)
    print(header)
    print(" " * 37 + "| " + " | ".join(f"{'cov   out':>13s}" for _ in INTERVALS))
    worst = {name: (1.0, 0.0) for name in INTERVALS}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for multi, topics, n_group, n_model, truth, found in pool.map(grid_point, points):
            cells = []
            for name, (covered, outside, _) in found.items():
                cells.append(f"{covered:5.3f} {outside:5.3f}")
                worst[name] = (min(worst[name][0], covered), max(worst[name][1], outside))
            label = "multi " if multi else "single"
            print(
                f"{label} {topics:7d} {n_group:7d} {n_model:7d}  {truth:.2f} | " + " | ".join(cells),
                flush=True,
            )
    print(
        "lowest coverage / largest out share over the grid: "
        + "; ".join(f"{name} {cov:.3f}/{out:.3f}" for name, (cov, out) in worst.items())
    )


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
                replicate_gaps = centred_replicates(m, g, m_reps, g_reps) - centred_replicates(
                    g, o, g_reps, o_reps
                )
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
    parser.add_argument("--grid-studies", type=int, default=400, help="studies per grid point of (2)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="a corner of the grid only (minutes)")
    parser.add_argument("--only-grid", action="store_true", help="print the coverage grid (2) alone")
    parser.add_argument("--truths", type=float, nargs="+", help="part of the grid: these true alignments")
    parser.add_argument("--model-posts", type=int, nargs="+", help="part of the grid: these model cell sizes")
    parser.add_argument("--group-posts", type=int, nargs="+", help="part of the grid: these group cell sizes")
    parser.add_argument("--topics", type=int, nargs="+", help="part of the grid: these topic counts")
    parser.add_argument("--labels", choices=("multi", "single"), nargs="+", help="part of the grid")
    args = parser.parse_args()
    only = {
        "truths": args.truths,
        "model_posts": args.model_posts,
        "group_posts": args.group_posts,
        "topics": args.topics,
        "labels": args.labels,
    }
    rng = np.random.default_rng(args.seed)
    began = time.perf_counter()
    if args.only_grid:
        coverage_grid(args.grid_studies, args.replicates, args.seed, args.workers, args.quick, only)
        print(f"\n{time.perf_counter() - began:.0f} s")
        return 0
    bias_table(rng, args.studies, args.replicates)
    coverage_grid(args.grid_studies, args.replicates, args.seed, args.workers, args.quick, only)
    tendency_rates(rng, max(2 * args.studies, 400), (10, 26))
    below_baseline_rates(rng, max(2 * args.studies, 400), args.replicates)
    permutation_rates(rng, max(2 * args.studies, 400), 199)
    print(f"\n{time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
