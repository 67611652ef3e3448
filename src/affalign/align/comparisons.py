"""Scores with their reference points, intervals and tests; tendency, steerability, baseline.

Pure functions over polars frames (no I/O). Inputs are the per-post affect tables of the
align stage: model posts keyed by ``model, prompt_type, issue, topic`` and human posts keyed
by ``issue, topic, group``, each with one boolean ``y_<label>`` column per label.

How each number is made (estimands and measured coverage: ``docs/methods.md``, "Sizes, reference
points, intervals and tests"):

* A cell's posts are reduced to label patterns (:mod:`affalign.align.resampling`); every
  resample is a vector of pattern counts, drawn from a generator seeded by the global seed
  and the cell's keys, so results do not depend on the order of cells.
* ``alignment`` is the published plug-in score ``1 − JSD``; ``alignment_corrected`` removes
  its sample-size bias (:mod:`affalign.align.inference`). Comparisons — the gap to the
  baseline, tendency, steerability — use the corrected score.
* ``ceiling`` / ``ceiling_corrected``: the mean score, with the same estimator, of a
  *perfect model*: a cell of the model's size drawn from the group's own posts, against a
  resample of the group cell. For the baseline: two cells of the groups' sizes drawn from the
  pooled posts of both groups (what identical groups would score).
* Intervals: percentile intervals of bootstrap replicates of the corrected score (posts
  resampled within each cell); means over topics get a two-stage (topics, then posts)
  bootstrap interval.
* Tests: ``p_distinguishable`` is a permutation test (posts of the model and the group cell
  pooled and split at random; statistic: plug-in divergence); tendency, steerability and
  differential steerability are sign-flip tests over topics of the per-topic corrected
  differences, with Holm and Benjamini–Hochberg adjustments across each family (all
  tendency tests; all steerability and differential steerability tests) and the smallest
  p-value the number of topics can reach; ``p_below_baseline`` is a one-sided bootstrap
  test that the corrected score lies below the corrected baseline on that topic.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from affalign.align.divergence import jensen_shannon_distance, smooth
from affalign.align.inference import (
    centred_replicates,
    corrected_alignment,
    hierarchical_means,
    pattern_moments,
    plugin_alignment,
    plugin_divergence,
)
from affalign.align.resampling import liberal_tendency, random_split, resample_pattern_counts
from affalign.classify import label_column
from affalign.generate import DEFAULT_PROMPT_TYPE
from affalign.io import derive_seed
from affalign.stats import benjamini_hochberg, holm, percentile_interval, sign_flip_test, wilson_interval

MODEL_KEYS = ("model", "prompt_type", "issue", "topic")
HUMAN_KEYS = ("issue", "topic", "group")
HIERARCHICAL_DRAWS = 2000
# Random sign vectors per sign-flip test over topics (every vector is enumerated up to 15
# topics): smallest p 1e-4 beyond that.
SIGN_FLIP_DRAWS = 9999
# The smallest cells and topic counts whose interval coverage was measured (the grid of
# ``benchmarks/bench_coverage.py``: every interval ≥ 90 % from here up, docs/methods.md "Measured
# coverage and test levels"). Below them a row's ``interval_ok`` is false and its figure
# whisker dashed: the interval may still be right, but nothing has shown it.
MEASURED_MODEL_POSTS = 24
MEASURED_GROUP_POSTS = 30
MEASURED_TOPICS = 3
# Cells of fewer posts than this are measured only against cells at most this many times larger.
UNBALANCED_MEASURED = 100
UNBALANCED_RATIO = 10


@dataclass(frozen=True)
class BootstrapSettings:
    """Resampling and testing: bootstrap replicates (also the draws of each noise ceiling),
    interval level, seed, permutations per permutation test, and the level of the
    below-baseline decisions and of the adjusted tests' warnings."""

    replicates: int = 200
    confidence: float = 0.95
    seed: int = 0
    permutations: int = 199
    alpha: float = 0.05


@dataclass(frozen=True)
class Counting:
    """How a post adds to its cell's label counts: once per label (``fractional=False``, the
    paper's) or 1/k for each of its k labels; posts without a label add nothing
    (``none_bin=False``) or count in an extra ``none`` label."""

    none_bin: bool = False
    fractional: bool = False

    def describe(self) -> tuple[str, str]:
        return ("fractional" if self.fractional else "whole", "none bin" if self.none_bin else "dropped")


COUNTING_VARIANTS = tuple(
    Counting(none_bin, fractional) for fractional in (False, True) for none_bin in (False, True)
)


def post_vectors(flags: np.ndarray, counting: Counting, smoothing: np.ndarray | None = None) -> np.ndarray:
    """(patterns × labels[+1]) rows each post of a pattern adds to its cell's label counts.

    ``smoothing`` (labels × labels, e.g. Plutchik) acts on the labels; a ``none`` column,
    when counted, is left unsmoothed."""
    flags = np.asarray(flags, dtype=float)
    carried = flags.sum(axis=1, keepdims=True)
    vectors = flags / np.maximum(carried, 1.0) if counting.fractional else flags
    if smoothing is not None:
        vectors = smooth(vectors, smoothing)
    if counting.none_bin:
        vectors = np.hstack([vectors, (carried == 0).astype(float)])
    return vectors


# --- cells -------------------------------------------------------------------------------


@dataclass
class _Cell:
    key: tuple
    masks: np.ndarray  # (patterns,) label bitmasks, ascending
    posts: np.ndarray  # (patterns,) posts per pattern
    draws: np.ndarray | None = None  # (replicates × patterns) bootstrap pattern counts

    @property
    def n(self) -> int:
        return int(self.posts.sum())

    def unlabelled_share(self) -> float:
        return float(self.posts[self.masks == 0].sum() / self.n) if self.n else float("nan")


def _flags(masks: np.ndarray, labels: int) -> np.ndarray:
    """(patterns × labels) booleans of label bitmasks."""
    return (masks[:, None] >> np.arange(labels)[None, :]) & 1 > 0


def _cells(posts: pl.DataFrame, keys: Sequence[str], labels: Sequence[str]) -> dict[tuple, _Cell]:
    """Label patterns (bitmasks) and their post counts per cell of ``keys``."""
    if len(labels) > 62:
        raise ValueError("at most 62 labels can be compared")
    bits = [pl.col(label_column(label)).cast(pl.Int64) * (1 << i) for i, label in enumerate(labels)]
    counted = (
        posts.lazy()
        .select([*keys, pl.sum_horizontal(bits).alias("pattern")])
        .group_by([*keys, "pattern"])
        .agg(pl.len().alias("posts"))
        .sort([*keys, "pattern"])
        .with_columns(pl.struct(list(keys)).rank("dense").alias("cell"))
        .collect()
    )
    if counted.height == 0:
        return {}
    cell_index = counted["cell"].to_numpy()
    masks = counted["pattern"].to_numpy().astype(np.int64)
    counts = counted["posts"].to_numpy().astype(np.int64)
    starts = np.flatnonzero(np.r_[True, cell_index[1:] != cell_index[:-1]])
    ends = np.r_[starts[1:], cell_index.size]
    key_rows = counted.select(list(keys)).gather(starts).rows()
    return {
        tuple(key): _Cell(tuple(key), masks[start:end], counts[start:end])
        for key, start, end in zip(key_rows, starts, ends, strict=True)
    }


def _pooled(a: _Cell, b: _Cell) -> tuple[np.ndarray, np.ndarray]:
    """Union of two cells' patterns and the pooled post counts over it."""
    masks = np.union1d(a.masks, b.masks)
    pooled = np.zeros(masks.size, dtype=np.int64)
    pooled[np.searchsorted(masks, a.masks)] += a.posts
    pooled[np.searchsorted(masks, b.masks)] += b.posts
    return masks, pooled


def _ceiling_size(n: int) -> int:
    """Cell size at which a ceiling is simulated: exact below 1,000 posts, else rounded to
    three significant digits (ceilings of nearby sizes are shared; ≤ 0.5 % size error)."""
    if n < 1000:
        return n
    digits = int(np.floor(np.log10(n))) - 2
    return int(round(n / 10**digits) * 10**digits)


# --- per-topic scoring -------------------------------------------------------------------


@dataclass
class _Scores:
    """Point and replicate scores of one comparison under one counting variant."""

    corrected: float
    corrected_reps: np.ndarray  # centred on ``corrected`` (inference.centred_replicates)
    plugin: float = float("nan")


@dataclass
class _Extras:
    """Reference points and the permutation test (configured counting only)."""

    ceiling: float
    ceiling_corrected: float
    p_distinguishable: float


@dataclass
class _Scored:
    rows: dict[tuple, _Scores] = field(default_factory=dict)
    baseline: dict[tuple, _Scores] = field(default_factory=dict)


class _Scorer:
    def __init__(
        self,
        labels: Sequence[str],
        groups: Sequence[str],
        settings: BootstrapSettings,
        smoothing: np.ndarray | None,
        variants: Sequence[Counting],
    ):
        self.n_labels = len(labels)
        self.groups = tuple(groups)
        self.settings = settings
        self.smoothing = smoothing
        self.variants = tuple(variants)
        self.scored = {variant: _Scored() for variant in self.variants}
        self.extras: dict[tuple, _Extras] = {}
        self.baseline_extras: dict[tuple, _Extras] = {}
        self.sizes: dict[tuple, tuple[int, float]] = {}
        self.ceilings: dict[tuple, tuple[float, float]] = {}

    def measured(self, model: str, prompt_type: str, issue: str, topics: Sequence[str], group: str) -> bool:
        """Whether intervals over these cells (one per topic) lie in the measured range."""
        return len(topics) >= MEASURED_TOPICS and all(
            _sizes_measured(
                self.sizes[(model, prompt_type, issue, topic)][0],
                self.sizes[(issue, topic, group)][0],
                (MEASURED_MODEL_POSTS, MEASURED_GROUP_POSTS),
            )
            for topic in topics
        )

    def vectors(self, cell: _Cell, variant: Counting, masks: np.ndarray | None = None) -> np.ndarray:
        flags = _flags(cell.masks if masks is None else masks, self.n_labels)
        return post_vectors(flags, variant, self.smoothing)

    def bootstrap(self, cell: _Cell) -> None:
        rng = np.random.default_rng(derive_seed(self.settings.seed, "bootstrap", *cell.key))
        cell.draws = resample_pattern_counts(cell.posts, cell.n, self.settings.replicates, rng)
        self.sizes[cell.key] = (cell.n, cell.unlabelled_share())

    def topic(self, issue: str, topic: str, human: dict[str, _Cell], models: list[_Cell]) -> None:
        for cell in [*human.values(), *models]:
            self.bootstrap(cell)
        groups = [g for g in self.groups if g in human]
        configured = self.variants[0]
        for variant in self.variants:
            scored = self.scored[variant]
            moments = {}
            for cell in [*human.values(), *models]:
                features = pattern_moments(self.vectors(cell, variant))
                moments[cell.key] = (cell.posts @ features, cell.draws @ features, features)
            with_plugin = variant == configured
            if len(groups) == 2 and len(self.groups) == 2:
                a, b = (moments[human[g].key] for g in self.groups)
                scored.baseline[(issue, topic)] = _score(a, b, with_plugin)
                if with_plugin:
                    self.baseline_extras[(issue, topic)] = self._baseline_extras(
                        issue, topic, human[self.groups[0]], human[self.groups[1]], variant
                    )
            if not models or not groups:
                continue
            model_points = np.stack([moments[m.key][0] for m in models])
            model_reps = np.stack([moments[m.key][1] for m in models])
            for group in groups:
                point, reps, _ = moments[human[group].key]
                corrected = corrected_alignment(model_points, point)
                corrected_reps = centred_replicates(model_points, point, model_reps, reps[None])
                plugin = plugin_alignment(model_points, point) if with_plugin else None
                for index, model in enumerate(models):
                    key = (*model.key, group)
                    scored.rows[key] = _Scores(
                        float(corrected[index]),
                        corrected_reps[index],
                        float(plugin[index]) if with_plugin else float("nan"),
                    )
                if with_plugin:
                    for model in models:
                        self.extras[(*model.key, group)] = self._row_extras(
                            model, human[group], moments, variant
                        )
        # A topic's resamples are summarised in its scores: free them (gigabytes at paper scale).
        for cell in [*human.values(), *models]:
            cell.draws = None

    def _ceiling(self, group: _Cell, n_model: int, group_reps: np.ndarray, features: np.ndarray) -> tuple:
        size = _ceiling_size(n_model)
        rng = np.random.default_rng(derive_seed(self.settings.seed, "ceiling", *group.key, size))
        perfect = resample_pattern_counts(group.posts, size, self.settings.replicates, rng) @ features
        return _nanmean(plugin_alignment(perfect, group_reps)), _nanmean(
            corrected_alignment(perfect, group_reps)
        )

    def _row_extras(self, model: _Cell, group: _Cell, moments: dict, variant: Counting) -> _Extras:
        point_model, _, _ = moments[model.key]
        point_group, group_reps, features = moments[group.key]
        if model.n == 0 or group.n == 0:
            return _Extras(float("nan"), float("nan"), float("nan"))
        size_key = (group.key, _ceiling_size(model.n), variant)
        if size_key not in self.ceilings:
            self.ceilings[size_key] = self._ceiling(group, model.n, group_reps, features)
        ceiling, ceiling_corrected = self.ceilings[size_key]
        rng = np.random.default_rng(derive_seed(self.settings.seed, "permutation", *model.key, group.key[-1]))
        p = self._permutation_p(model, group, point_model, point_group, variant, rng)
        return _Extras(ceiling, ceiling_corrected, p)

    def _permutation_p(self, a: _Cell, b: _Cell, moments_a, moments_b, variant, rng) -> float:
        observed = float(plugin_divergence(moments_a, moments_b))
        if not np.isfinite(observed) or self.settings.permutations == 0:
            return float("nan")
        masks, pooled = _pooled(a, b)
        vectors = self.vectors(a, variant, masks)
        first = random_split(pooled, a.n, self.settings.permutations, rng) @ vectors
        second = (pooled @ vectors)[None, :] - first
        null = np.nan_to_num(jensen_shannon_distance(first, second) ** 2, nan=-1.0)
        exceed = int(np.sum(null >= observed - 1e-12 * max(observed, 1.0)))
        return (1 + exceed) / (1 + self.settings.permutations)

    def _baseline_extras(self, issue, topic, a: _Cell, b: _Cell, variant: Counting) -> _Extras:
        if a.n == 0 or b.n == 0:
            return _Extras(float("nan"), float("nan"), float("nan"))
        masks, pooled = _pooled(a, b)
        features = pattern_moments(self.vectors(a, variant, masks))
        replicates = self.settings.replicates
        rng = np.random.default_rng(derive_seed(self.settings.seed, "ceiling-baseline", issue, topic))
        side_a = resample_pattern_counts(pooled, a.n, replicates, rng) @ features
        side_b = resample_pattern_counts(pooled, b.n, replicates, rng) @ features
        moments_a = a.posts @ pattern_moments(self.vectors(a, variant))
        moments_b = b.posts @ pattern_moments(self.vectors(b, variant))
        rng = np.random.default_rng(derive_seed(self.settings.seed, "permutation-baseline", issue, topic))
        return _Extras(
            _nanmean(plugin_alignment(side_a, side_b)),
            _nanmean(corrected_alignment(side_a, side_b)),
            self._permutation_p(a, b, moments_a, moments_b, variant, rng),
        )


def _score(a: tuple, b: tuple, with_plugin: bool) -> _Scores:
    point_a, reps_a, _ = a
    point_b, reps_b, _ = b
    return _Scores(
        float(corrected_alignment(point_a, point_b)),
        centred_replicates(point_a, point_b, reps_a, reps_b),
        float(plugin_alignment(point_a, point_b)) if with_plugin else float("nan"),
    )


# --- tables --------------------------------------------------------------------------------


def _estimate_interval(estimate: float, replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of centred replicates, never excluding its own estimate: where a
    skewed bootstrap distribution puts a quantile just short of the estimate (measured: at most
    0.5 % of rows in the coverage grid), the bound is moved to it."""
    low, high = percentile_interval(replicates, confidence)
    if np.isfinite(estimate) and np.isfinite(low) and np.isfinite(high):
        low, high = min(float(low), estimate), max(float(high), estimate)
    return float(low), float(high)


def _sizes_measured(n_first: int, n_second: int, measured: tuple[int, int]) -> bool:
    """Whether a comparison of cells of these sizes lies in the measured range: each side at
    least its smallest measured size, and not a small cell against one many times larger
    (measured single-label coverage dipped to 0.88-0.91 with 24 posts against 1,000, and to
    0.89 with 2,000 against 30)."""
    if n_first < measured[0] or n_second < measured[1]:
        return False
    small, large = sorted((n_first, n_second))
    return small >= UNBALANCED_MEASURED or large <= UNBALANCED_RATIO * small


def _topic_means(replicates: list[np.ndarray]) -> np.ndarray:
    if not replicates:
        return np.array([np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate undefined in every topic
        return np.nanmean(np.vstack(replicates), axis=0)


def _n_scored(first: Sequence[_Scores], second: Sequence[_Scores] | None = None) -> int:
    """Topics with a score (plug-in or corrected; with ``second``, a difference
    ``first − second``): a topic whose model cell has no usable post is not counted."""
    if second is None:
        return sum(bool(np.isfinite(s.plugin) or np.isfinite(s.corrected)) for s in first)
    return sum(
        bool(np.isfinite(a.plugin - b.plugin) or np.isfinite(a.corrected - b.corrected))
        for a, b in zip(first, second, strict=True)
    )


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


# The columns every scored comparison (a model against a group, a partisan baseline) ends
# with, after its keys, plug-in score, sizes, plug-in interval and unlabelled shares.
SCORE_INFERENCE_COLUMNS = [
    "ceiling",
    "alignment_corrected",
    "corrected_low",
    "corrected_high",
    "interval_ok",
    "ceiling_corrected",
    "p_distinguishable",
]


def _scored_schema(keys: Sequence[str], sizes: Sequence[str], unlabelled: Sequence[str]) -> dict:
    return {
        **dict.fromkeys(keys, pl.String),
        "jsd": pl.Float64,
        "alignment": pl.Float64,
        **dict.fromkeys(sizes, pl.Int64),
        **dict.fromkeys(unlabelled, pl.Float64),
        **dict.fromkeys(SCORE_INFERENCE_COLUMNS, pl.Float64),
        "interval_ok": pl.Boolean,
    }


def _scored_row(
    keys: tuple, score: _Scores, extra: _Extras, sides: Sequence[tuple], confidence: float, measured: tuple
):
    """One row of :func:`_scored_schema`; ``sides`` holds each side's (posts, unlabelled share),
    ``measured`` the smallest size of each side whose coverage was measured."""
    (n_first, unlabelled_first), (n_second, unlabelled_second) = sides
    corrected_low, corrected_high = _estimate_interval(score.corrected, score.corrected_reps, confidence)
    interval_ok = _sizes_measured(n_first, n_second, measured)
    return (*keys, 1.0 - score.plugin, score.plugin, n_first, n_second, unlabelled_first,
            unlabelled_second, extra.ceiling, score.corrected, corrected_low, corrected_high, interval_ok,
            extra.ceiling_corrected, extra.p_distinguishable)  # fmt: skip


def _alignment_table(scorer: _Scorer) -> pl.DataFrame:
    scored = scorer.scored[scorer.variants[0]]
    rows = []
    for key in sorted(scored.rows):
        model, prompt_type, issue, topic, group = key
        sides = (scorer.sizes[(model, prompt_type, issue, topic)], scorer.sizes[(issue, topic, group)])
        rows.append(
            _scored_row(key, scored.rows[key], scorer.extras[key], sides, scorer.settings.confidence,
                        (MEASURED_MODEL_POSTS, MEASURED_GROUP_POSTS))
        )  # fmt: skip
    schema = _scored_schema(
        (*MODEL_KEYS, "group"), ("n_model_posts", "n_human_posts"), ("unlabelled_model", "unlabelled_human")
    )
    return pl.DataFrame(rows, schema=schema, orient="row")


def _baseline_table(scorer: _Scorer) -> pl.DataFrame:
    scored = scorer.scored[scorer.variants[0]]
    group_a, group_b = scorer.groups[:2] if len(scorer.groups) >= 2 else (None, None)
    rows = []
    for (issue, topic), score in sorted(scored.baseline.items()):
        sides = (scorer.sizes[(issue, topic, group_a)], scorer.sizes[(issue, topic, group_b)])
        extra = scorer.baseline_extras[(issue, topic)]
        rows.append(
            _scored_row(
                (issue, topic, group_a, group_b),
                score,
                extra,
                sides,
                scorer.settings.confidence,
                (MEASURED_GROUP_POSTS, MEASURED_GROUP_POSTS),
            )
        )
    schema = _scored_schema(
        ("issue", "topic", "group_a", "group_b"), ("n_posts_a", "n_posts_b"), ("unlabelled_a", "unlabelled_b")
    )
    return pl.DataFrame(rows, schema=schema, orient="row")


@dataclass(frozen=True)
class _Paired:
    """Per-topic differences of two comparisons, summarised over topics: the mean corrected
    difference with its interval, its sign-flip test and the smallest p-value the topics can
    reach."""

    corrected: float
    corrected_low: float
    corrected_high: float
    p_signflip: float
    min_attainable_p: float


def _paired(
    first: Sequence[_Scores], second: Sequence[_Scores], settings: BootstrapSettings, *coordinates
) -> _Paired:
    """``first − second`` topic by topic (same topics, same order); the sign-flip test is
    seeded by the global seed and ``coordinates``."""
    pairs = list(zip(first, second, strict=True))
    differences = [a.corrected - b.corrected for a, b in pairs]
    corrected_low, corrected_high = _estimate_interval(
        _nanmean(differences),
        _topic_means([a.corrected_reps - b.corrected_reps for a, b in pairs]),
        settings.confidence,
    )
    rng = np.random.default_rng(derive_seed(settings.seed, "sign-flip", *coordinates))
    test = sign_flip_test(differences, SIGN_FLIP_DRAWS, rng)
    return _Paired(_nanmean(differences), corrected_low, corrected_high, test.p_value, test.min_attainable_p)


def _adjust(frame: pl.DataFrame, prefixes: dict[str, str]) -> pl.DataFrame:
    """Holm and BH columns (``<prefix>p_holm``, ``<prefix>p_bh``) for the p-value columns
    named in ``prefixes``, all of them one family."""
    p_values = np.array([frame[column].to_numpy().astype(float) for column in prefixes])
    p_values = p_values.reshape(len(prefixes), frame.height)
    holm_all, bh_all = holm(p_values), benjamini_hochberg(p_values)
    added = []
    for i, prefix in enumerate(prefixes.values()):
        added += [pl.Series(f"{prefix}p_holm", holm_all[i]), pl.Series(f"{prefix}p_bh", bh_all[i])]
    return frame.with_columns(added)


def _tendency_table(scorer: _Scorer, variant: Counting) -> pl.DataFrame:
    scored = scorer.scored[variant]
    settings = scorer.settings
    liberal, conservative = (
        scorer.groups[:2] if scorer.groups[0] == "liberal" else tuple(reversed(scorer.groups[:2]))
    )
    cells: dict[tuple, list[str]] = defaultdict(list)
    for model, prompt_type, issue, topic, group in scored.rows:
        if group == liberal and (model, prompt_type, issue, topic, conservative) in scored.rows:
            cells[(model, prompt_type, issue)].append(topic)
    rows = []
    for (model, prompt_type, issue), topics in sorted(cells.items()):
        lib = [scored.rows[(model, prompt_type, issue, t, liberal)] for t in topics]
        con = [scored.rows[(model, prompt_type, issue, t, conservative)] for t in topics]
        plugin = liberal_tendency([s.plugin for s in lib], [s.plugin for s in con])
        paired = _paired(lib, con, settings, "tendency", model, prompt_type, issue)
        rows.append(
            (model, issue, prompt_type, plugin["tendency"], plugin["n_topics"], plugin["wilcoxon_statistic"],
             plugin["p_value"], paired.corrected, paired.corrected_low, paired.corrected_high,
             all(scorer.measured(model, prompt_type, issue, topics, g) for g in (liberal, conservative)),
             paired.p_signflip, paired.min_attainable_p)
        )  # fmt: skip
    schema = {
        "model": pl.String,
        "issue": pl.String,
        "prompt_type": pl.String,
        "tendency": pl.Float64,
        "n_topics": pl.Int64,
        "wilcoxon_statistic": pl.Float64,
        "p_value": pl.Float64,
        "tendency_corrected": pl.Float64,
        "corrected_low": pl.Float64,
        "corrected_high": pl.Float64,
        "interval_ok": pl.Boolean,
        "p_signflip": pl.Float64,
        "min_attainable_p": pl.Float64,
    }
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    adjusted = _adjust(frame, {"p_signflip": ""})
    return adjusted.select([*list(schema)[:12], "p_holm", "p_bh", "min_attainable_p"])


def _steerability_table(scorer: _Scorer, variant: Counting) -> pl.DataFrame:
    scored = scorer.scored[variant]
    settings = scorer.settings
    topics: dict[tuple, list[str]] = defaultdict(list)
    for model, prompt_type, issue, topic, group in scored.rows:
        steered = (model, group, issue, topic, group)
        if prompt_type == DEFAULT_PROMPT_TYPE and group in scorer.groups and steered in scored.rows:
            topics[(model, issue, group)].append(topic)
    rows = []
    for (model, issue, group), topic_list in sorted(topics.items()):
        steered = [scored.rows[(model, group, issue, t, group)] for t in topic_list]
        default = [scored.rows[(model, DEFAULT_PROMPT_TYPE, issue, t, group)] for t in topic_list]
        shifts = [s.plugin - d.plugin for s, d in zip(steered, default, strict=True)]
        paired = _paired(steered, default, settings, "steerability", model, issue, group)
        differential = _differential(scored, scorer.groups, model, issue, group, settings)
        rows.append(
            (model, issue, group, _nanmean(shifts), _n_scored(steered, default),
             paired.corrected, paired.corrected_low, paired.corrected_high,
             all(scorer.measured(model, p, issue, topic_list, group) for p in (DEFAULT_PROMPT_TYPE, group)),
             paired.p_signflip,
             paired.min_attainable_p, *differential)
        )  # fmt: skip
    schema = {
        "model": pl.String,
        "issue": pl.String,
        "group": pl.String,
        "steerability": pl.Float64,
        "n_topics": pl.Int64,
        "steerability_corrected": pl.Float64,
        "corrected_low": pl.Float64,
        "corrected_high": pl.Float64,
        "interval_ok": pl.Boolean,
        "p_signflip": pl.Float64,
        "min_attainable_p": pl.Float64,
        "differential": pl.Float64,
        "differential_low": pl.Float64,
        "differential_high": pl.Float64,
        "differential_n_topics": pl.Int64,
        "differential_p_signflip": pl.Float64,
        "differential_min_attainable_p": pl.Float64,
    }
    frame = pl.DataFrame(rows, schema=schema, orient="row")
    frame = _adjust(frame, {"p_signflip": "", "differential_p_signflip": "differential_"})
    order = [*list(schema)[:10], "p_holm", "p_bh", "min_attainable_p", *list(schema)[11:16],
             "differential_p_holm", "differential_p_bh", "differential_min_attainable_p"]  # fmt: skip
    return frame.select(order)


def _differential(scored: _Scored, groups, model, issue, group, settings) -> tuple:
    """Alignment with ``group`` when steered towards it − when steered towards the other
    group(s) (their mean), per topic: mean, interval, topics, sign-flip p, smallest p."""
    others = [g for g in groups if g != group]
    towards, away = [], []
    for topic in sorted({key[3] for key in scored.rows if key[0] == model and key[2] == issue}):
        own = scored.rows.get((model, group, issue, topic, group))
        other = [scored.rows.get((model, g, issue, topic, group)) for g in others]
        if own is None or not other or any(o is None for o in other):
            continue
        towards.append(own)
        # The other groups' mean, as one comparison (corrected scores only).
        away.append(
            _Scores(
                float(np.mean([o.corrected for o in other])),
                np.mean([o.corrected_reps for o in other], axis=0),
            )
        )
    if not towards:
        return (float("nan"), float("nan"), float("nan"), 0, float("nan"), float("nan"))
    paired = _paired(towards, away, settings, "differential", model, issue, group)
    return (paired.corrected, paired.corrected_low, paired.corrected_high, len(towards), paired.p_signflip,
            paired.min_attainable_p)  # fmt: skip


def _model_level(scorer: _Scorer, variant: Counting) -> tuple[pl.DataFrame, dict[tuple, np.ndarray]]:
    """Per model × prompt type × issue × group: means over topics with two-stage intervals,
    the gap to the baseline and the share of topics tested below it; also per-row
    below-baseline p-values (keyed like the alignment rows)."""
    scored = scorer.scored[variant]
    settings = scorer.settings
    configured = variant == scorer.variants[0]
    topics: dict[tuple, list[str]] = defaultdict(list)
    for model, prompt_type, issue, topic, group in sorted(scored.rows):
        topics[(model, prompt_type, issue, group)].append(topic)
    rows, per_row = [], {}
    for (model, prompt_type, issue, group), topic_list in sorted(topics.items()):
        scores = [scored.rows[(model, prompt_type, issue, t, group)] for t in topic_list]
        bases = [scored.baseline.get((issue, t)) for t in topic_list]
        rng = np.random.default_rng(
            derive_seed(settings.seed, "model-level", model, prompt_type, issue, group)
        )
        corrected = hierarchical_means(np.vstack([s.corrected_reps for s in scores]), HIERARCHICAL_DRAWS, rng)
        corrected_low, corrected_high = _estimate_interval(
            _nanmean([s.corrected for s in scores]), corrected, settings.confidence
        )
        gaps, gap_reps, below = [], [], []
        for topic, score, base in zip(topic_list, scores, bases, strict=True):
            if base is None:
                continue
            gap = score.corrected - base.corrected
            replicate_gaps = score.corrected_reps - base.corrected_reps
            finite = replicate_gaps[np.isfinite(replicate_gaps)]
            p_below = (
                (1 + np.sum(finite >= 0)) / (1 + finite.size) if np.isfinite(gap) and finite.size else np.nan
            )
            per_row[(model, prompt_type, issue, topic, group)] = np.array([gap, p_below])
            if np.isfinite(gap):
                gaps.append(gap)
                gap_reps.append(replicate_gaps)
                below.append(bool(p_below < settings.alpha))
        if gap_reps:
            gap_low, gap_high = _estimate_interval(
                _nanmean(gaps),
                hierarchical_means(np.vstack(gap_reps), HIERARCHICAL_DRAWS, rng),
                settings.confidence,
            )
        else:
            gap_low = gap_high = float("nan")
        share_low, share_high = wilson_interval(sum(below), len(below), settings.confidence)
        extras = [scorer.extras.get((model, prompt_type, issue, t, group)) for t in topic_list]
        extras = [e for e in extras if e is not None] if configured else []
        share = sum(below) / len(below) if below else float("nan")
        unlabelled = _nanmean([scorer.sizes[(model, prompt_type, issue, t)][1] for t in topic_list])
        rows.append(
            (model, prompt_type, issue, group, _n_scored(scores), _nanmean([s.plugin for s in scores]),
             _nanmean([e.ceiling for e in extras]), _nanmean([s.corrected for s in scores]),
             corrected_low, corrected_high, scorer.measured(model, prompt_type, issue, topic_list, group),
             _nanmean([e.ceiling_corrected for e in extras]),
             _nanmean([b.corrected for b in bases if b is not None]), _nanmean(gaps), gap_low, gap_high,
             sum(below), len(below), share, share_low, share_high, unlabelled)
        )  # fmt: skip
    schema = {
        "model": pl.String,
        "prompt_type": pl.String,
        "issue": pl.String,
        "group": pl.String,
        "n_topics": pl.Int64,
        "alignment": pl.Float64,
        "ceiling": pl.Float64,
        "alignment_corrected": pl.Float64,
        "corrected_low": pl.Float64,
        "corrected_high": pl.Float64,
        "interval_ok": pl.Boolean,
        "ceiling_corrected": pl.Float64,
        "baseline_corrected": pl.Float64,
        "baseline_gap": pl.Float64,
        "gap_low": pl.Float64,
        "gap_high": pl.Float64,
        "n_below": pl.Int64,
        "n_tested": pl.Int64,
        "share_below_tested": pl.Float64,
        "share_below_low": pl.Float64,
        "share_below_high": pl.Float64,
        "unlabelled_model": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row"), per_row


def _below_baseline(alignment: pl.DataFrame, baseline: pl.DataFrame, summary: pl.DataFrame) -> pl.DataFrame:
    joined = alignment.join(
        baseline.select("issue", "topic", pl.col("alignment").alias("baseline")),
        on=["issue", "topic"],
        how="inner",
    )
    keys = ["model", "prompt_type", "issue", "group"]
    raw = (
        joined.drop_nulls(["alignment", "baseline"])
        .filter(pl.col("alignment").is_not_nan() & pl.col("baseline").is_not_nan())
        .group_by(keys)
        .agg(
            (pl.col("alignment") < pl.col("baseline")).mean().alias("share_below_baseline"),
            pl.len().alias("n_topics"),
        )
    )
    tested = summary.select(
        *keys,
        "share_below_tested",
        pl.col("share_below_low").alias("share_below_tested_low"),
        pl.col("share_below_high").alias("share_below_tested_high"),
    )
    # One row per row of the model-level summary: a model × prompt type × issue × group
    # without any topic scored against the baseline has n_topics 0 and no shares.
    return (
        tested.join(raw, on=keys, how="left")
        .with_columns(pl.col("n_topics").fill_null(0).cast(pl.Int64))
        .select(
            *keys,
            "share_below_baseline",
            "n_topics",
            "share_below_tested",
            "share_below_tested_low",
            "share_below_tested_high",
        )
        .sort(keys)
    )


def _conclusions(tendency: pl.DataFrame, steerability: pl.DataFrame, summary: pl.DataFrame, alpha: float):
    """Model-level conclusions of one counting variant: (kind, key) → (direction, estimate).
    Direction is the sign of the estimate where its BH-adjusted test rejects at ``alpha``
    (for the baseline gap: where its interval excludes 0), else 0."""

    def direction(value, p):
        if value is None or p is None or not np.isfinite(p) or p >= alpha:
            return 0
        return int(np.sign(value))

    found = {}
    for row in tendency.iter_rows(named=True):
        key = ("tendency", row["model"], row["issue"], row["prompt_type"])
        found[key] = (direction(row["tendency_corrected"], row["p_bh"]), row["tendency_corrected"])
    for row in steerability.iter_rows(named=True):
        key = (row["model"], row["issue"], row["group"])
        found[("steerability", *key)] = (direction(row["steerability_corrected"], row["p_bh"]),
                                         row["steerability_corrected"])  # fmt: skip
        found[("differential steerability", *key)] = (
            direction(row["differential"], row["differential_p_bh"]),
            row["differential"],
        )
    for row in summary.iter_rows(named=True):
        low, high = row["gap_low"], row["gap_high"]
        side = -1 if (high is not None and high < 0) else (1 if (low is not None and low > 0) else 0)
        key = ("gap to baseline", row["model"], row["prompt_type"], row["issue"], row["group"])
        found[key] = (side, row["baseline_gap"])
    return found


def _sensitivity(scorer: _Scorer, tables: dict[Counting, tuple]) -> pl.DataFrame:
    alpha = scorer.settings.alpha
    reference = _conclusions(*tables[scorer.variants[0]], alpha)
    rows = []
    for variant in scorer.variants:
        found = _conclusions(*tables[variant], alpha)
        counting, unlabelled = variant.describe()
        for kind in ("tendency", "steerability", "differential steerability", "gap to baseline"):
            keys = [k for k in reference if k[0] == kind and k in found]
            changed = sum(reference[k][0] != found[k][0] for k in keys)
            shifts = [
                abs(found[k][1] - reference[k][1])
                for k in keys
                if found[k][1] is not None and reference[k][1] is not None
                and np.isfinite(found[k][1]) and np.isfinite(reference[k][1])
            ]  # fmt: skip
            rows.append(
                (counting, unlabelled, variant == scorer.variants[0], kind, len(keys), changed,
                 max(shifts) if shifts else float("nan"))
            )  # fmt: skip
    return pl.DataFrame(
        rows,
        schema={
            "counting": pl.String,
            "unlabelled": pl.String,
            "configured": pl.Boolean,
            "conclusion": pl.String,
            "n_conclusions": pl.Int64,
            "n_changed": pl.Int64,
            "max_abs_change": pl.Float64,
        },
        orient="row",
    )


def bootstrap_comparisons(
    model_posts: pl.DataFrame,
    human_posts: pl.DataFrame,
    labels: Sequence[str],
    groups: Sequence[str],
    settings: BootstrapSettings,
    smoothing: np.ndarray | None = None,
    counting: Counting | None = None,
    sensitivity: bool = False,
) -> dict[str, pl.DataFrame]:
    """Scores with reference points, intervals and tests, the baseline, tendency,
    steerability, the model-level summary and (with ``sensitivity``) the counting
    sensitivity table.

    ``labels`` are the classifier's labels (``y_<label>`` columns); ``counting`` says how
    posts add to the label counts (default: whole counting, unlabelled posts dropped).
    ``smoothing`` (labels × labels, e.g. Plutchik) acts on every post vector before the
    distance. Returns frames ``alignment``, ``baseline``, ``tendency``, ``steerability``,
    ``below_baseline``, ``model_summary`` and, with ``sensitivity``, ``sensitivity``.
    """
    configured = counting or Counting()
    variants = (
        [configured, *[v for v in COUNTING_VARIANTS if v != configured]] if sensitivity else [configured]
    )
    scorer = _Scorer(labels, groups, settings, smoothing, variants)
    model_cells = _cells(model_posts, MODEL_KEYS, labels)
    human_cells = _cells(human_posts, HUMAN_KEYS, labels)
    by_topic: dict[tuple, list[_Cell]] = defaultdict(list)
    for key, cell in model_cells.items():
        by_topic[key[2:]].append(cell)
    for issue, topic in sorted({k[:2] for k in human_cells} | set(by_topic)):
        human = {g: human_cells[(issue, topic, g)] for g in groups if (issue, topic, g) in human_cells}
        scorer.topic(issue, topic, human, by_topic.get((issue, topic), []))

    alignment = _alignment_table(scorer)
    baseline = _baseline_table(scorer)
    tables = {}
    below_rows = {}
    for variant in variants:
        summary, per_row = _model_level(scorer, variant)
        tables[variant] = (_tendency_table(scorer, variant), _steerability_table(scorer, variant), summary)
        if variant == configured:
            below_rows = per_row
    gap_rows = [(*key, float(v[0]), float(v[1])) for key, v in below_rows.items()]
    gaps = pl.DataFrame(
        gap_rows,
        schema={**dict.fromkeys([*MODEL_KEYS, "group"], pl.String), "baseline_gap": pl.Float64,
                "p_below_baseline": pl.Float64},
        orient="row",
    )  # fmt: skip
    # An undefined score (a cell without labelled posts) is null, not NaN.
    alignment = (
        alignment.join(gaps, on=[*MODEL_KEYS, "group"], how="left")
        .fill_nan(None)
        .with_columns((pl.col("p_below_baseline") < settings.alpha).alias("below_baseline"))
        .sort([*MODEL_KEYS, "group"])
    )
    baseline = baseline.fill_nan(None)
    tendency, steerability, summary = tables[configured]
    results = {
        "alignment": alignment,
        "baseline": baseline,
        "tendency": tendency.sort(["model", "issue", "prompt_type"]),
        "steerability": steerability,
        "below_baseline": _below_baseline(alignment, baseline, summary),
        "model_summary": summary.fill_nan(None),
    }
    if sensitivity:
        results["sensitivity"] = _sensitivity(scorer, tables)
    return results
