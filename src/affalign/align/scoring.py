"""Scoring of one topic: every model cell and group cell of a topic, resampled and scored.

A cell's posts are reduced to label patterns (bitmasks, :mod:`affalign.align.resampling`);
every resample is a vector of pattern counts, drawn from a generator seeded by the global
seed and the cell's keys, so scores do not depend on the order of cells. For each counting
variant, :class:`TopicScorer` keeps per comparison (a model against a group, the partisan
baseline) a :class:`TopicScore` (the corrected score with its centred bootstrap replicates,
and the plug-in score) and, for the configured counting, its :class:`ReferencePoints` (the
perfect model's ceilings and the permutation test). :mod:`affalign.align.comparisons` turns
these into the tables over topics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import polars as pl

from affalign.align.divergence import jensen_shannon_distance, smooth
from affalign.align.inference import (
    centred_replicates,
    corrected_alignment,
    pattern_moments,
    plugin_alignment,
    plugin_divergence,
)
from affalign.align.resampling import random_split, resample_pattern_counts
from affalign.classify import label_column
from affalign.io import derive_seed
from affalign.stats import percentile_interval

MODEL_KEYS = ("model", "prompt_type", "issue", "topic")
HUMAN_KEYS = ("issue", "topic", "group")
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
class Cell:
    """The posts of one model cell (``MODEL_KEYS``) or group cell (``HUMAN_KEYS``) as label
    patterns and their post counts, with the cell's bootstrap draws while its topic is scored."""

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


def cells_of(posts: pl.DataFrame, keys: Sequence[str], labels: Sequence[str]) -> dict[tuple, Cell]:
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
        tuple(key): Cell(tuple(key), masks[start:end], counts[start:end])
        for key, start, end in zip(key_rows, starts, ends, strict=True)
    }


def _pooled(a: Cell, b: Cell) -> tuple[np.ndarray, np.ndarray]:
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
class TopicScore:
    """Point and replicate scores of one comparison under one counting variant."""

    corrected: float
    corrected_reps: np.ndarray  # centred on ``corrected`` (inference.centred_replicates)
    plugin: float = float("nan")


@dataclass
class ReferencePoints:
    """What a comparison is measured against: the score a perfect model (plug-in and
    corrected) would reach at its size, and the permutation test of whether it can be told
    from the group at all. Computed for the configured counting only."""

    ceiling: float
    ceiling_corrected: float
    p_distinguishable: float


@dataclass
class VariantScores:
    """Every comparison scored under one counting variant: ``rows`` keyed by model cell and
    group (``(*MODEL_KEYS, group)``), ``baseline`` by ``(issue, topic)``."""

    rows: dict[tuple, TopicScore] = field(default_factory=dict)
    baseline: dict[tuple, TopicScore] = field(default_factory=dict)


class TopicScorer:
    """Scores topic after topic (:meth:`topic`) under every counting variant (the configured
    one first) and keeps what the tables over topics need: the scores per variant, the
    reference points (configured counting), and each cell's size and unlabelled share."""

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
        self.scored = {variant: VariantScores() for variant in self.variants}
        self.references: dict[tuple, ReferencePoints] = {}
        self.baseline_references: dict[tuple, ReferencePoints] = {}
        self.sizes: dict[tuple, tuple[int, float]] = {}
        self.ceilings: dict[tuple, tuple[float, float]] = {}

    def measured(self, model: str, prompt_type: str, issue: str, topics: Sequence[str], group: str) -> bool:
        """Whether intervals over these cells (one per topic) lie in the measured range."""
        return len(topics) >= MEASURED_TOPICS and all(
            sizes_measured(
                self.sizes[(model, prompt_type, issue, topic)][0],
                self.sizes[(issue, topic, group)][0],
                (MEASURED_MODEL_POSTS, MEASURED_GROUP_POSTS),
            )
            for topic in topics
        )

    def vectors(self, cell: Cell, variant: Counting, masks: np.ndarray | None = None) -> np.ndarray:
        flags = _flags(cell.masks if masks is None else masks, self.n_labels)
        return post_vectors(flags, variant, self.smoothing)

    def bootstrap(self, cell: Cell) -> None:
        rng = np.random.default_rng(derive_seed(self.settings.seed, "bootstrap", *cell.key))
        cell.draws = resample_pattern_counts(cell.posts, cell.n, self.settings.replicates, rng)
        self.sizes[cell.key] = (cell.n, cell.unlabelled_share())

    def topic(self, issue: str, topic: str, human: dict[str, Cell], models: list[Cell]) -> None:
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
                    self.baseline_references[(issue, topic)] = self._baseline_reference(
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
                    scored.rows[key] = TopicScore(
                        float(corrected[index]),
                        corrected_reps[index],
                        float(plugin[index]) if with_plugin else float("nan"),
                    )
                if with_plugin:
                    for model in models:
                        self.references[(*model.key, group)] = self._row_references(
                            model, human[group], moments, variant
                        )
        # A topic's resamples are summarised in its scores: free them (gigabytes at paper scale).
        for cell in [*human.values(), *models]:
            cell.draws = None

    def _ceiling(self, group: Cell, n_model: int, group_reps: np.ndarray, features: np.ndarray) -> tuple:
        size = _ceiling_size(n_model)
        rng = np.random.default_rng(derive_seed(self.settings.seed, "ceiling", *group.key, size))
        perfect = resample_pattern_counts(group.posts, size, self.settings.replicates, rng) @ features
        return finite_mean(plugin_alignment(perfect, group_reps)), finite_mean(
            corrected_alignment(perfect, group_reps)
        )

    def _row_references(self, model: Cell, group: Cell, moments: dict, variant: Counting) -> ReferencePoints:
        point_model, _, _ = moments[model.key]
        point_group, group_reps, features = moments[group.key]
        if model.n == 0 or group.n == 0:
            return ReferencePoints(float("nan"), float("nan"), float("nan"))
        size_key = (group.key, _ceiling_size(model.n), variant)
        if size_key not in self.ceilings:
            self.ceilings[size_key] = self._ceiling(group, model.n, group_reps, features)
        ceiling, ceiling_corrected = self.ceilings[size_key]
        rng = np.random.default_rng(derive_seed(self.settings.seed, "permutation", *model.key, group.key[-1]))
        p = self._permutation_p(model, group, point_model, point_group, variant, rng)
        return ReferencePoints(ceiling, ceiling_corrected, p)

    def _permutation_p(self, a: Cell, b: Cell, moments_a, moments_b, variant, rng) -> float:
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

    def _baseline_reference(self, issue, topic, a: Cell, b: Cell, variant: Counting) -> ReferencePoints:
        if a.n == 0 or b.n == 0:
            return ReferencePoints(float("nan"), float("nan"), float("nan"))
        masks, pooled = _pooled(a, b)
        features = pattern_moments(self.vectors(a, variant, masks))
        replicates = self.settings.replicates
        rng = np.random.default_rng(derive_seed(self.settings.seed, "ceiling-baseline", issue, topic))
        side_a = resample_pattern_counts(pooled, a.n, replicates, rng) @ features
        side_b = resample_pattern_counts(pooled, b.n, replicates, rng) @ features
        moments_a = a.posts @ pattern_moments(self.vectors(a, variant))
        moments_b = b.posts @ pattern_moments(self.vectors(b, variant))
        rng = np.random.default_rng(derive_seed(self.settings.seed, "permutation-baseline", issue, topic))
        return ReferencePoints(
            finite_mean(plugin_alignment(side_a, side_b)),
            finite_mean(corrected_alignment(side_a, side_b)),
            self._permutation_p(a, b, moments_a, moments_b, variant, rng),
        )


def _score(a: tuple, b: tuple, with_plugin: bool) -> TopicScore:
    point_a, reps_a, _ = a
    point_b, reps_b, _ = b
    return TopicScore(
        float(corrected_alignment(point_a, point_b)),
        centred_replicates(point_a, point_b, reps_a, reps_b),
        float(plugin_alignment(point_a, point_b)) if with_plugin else float("nan"),
    )


def sizes_measured(n_first: int, n_second: int, measured: tuple[int, int]) -> bool:
    """Whether a comparison of cells of these sizes lies in the measured range: each side at
    least its smallest measured size, and not a small cell against one many times larger
    (measured single-label coverage dipped to 0.88-0.91 with 24 posts against 1,000, and to
    0.89 with 2,000 against 30)."""
    if n_first < measured[0] or n_second < measured[1]:
        return False
    small, large = sorted((n_first, n_second))
    return small >= UNBALANCED_MEASURED or large <= UNBALANCED_RATIO * small


def finite_mean(values) -> float:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


# --- summaries over topics, shared by the tables -------------------------------------------

# The column types of the named rows below, by the annotation of each field.
DTYPES = {"str": pl.String, "float": pl.Float64, "int": pl.Int64, "bool": pl.Boolean}


def table_of(row_type: type, rows: Sequence) -> pl.DataFrame:
    """The frame of dataclass rows: one column per field, in field order, typed by its annotation."""
    names = [f.name for f in fields(row_type)]
    schema = {f.name: DTYPES[f.type] for f in fields(row_type)}
    return pl.DataFrame({name: [getattr(row, name) for row in rows] for name in names}, schema=schema)


def estimate_interval(estimate: float, replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of centred replicates, never excluding its own estimate: where a
    skewed bootstrap distribution puts a quantile just short of the estimate (measured: at most
    0.5 % of rows in the coverage grid), the bound is moved to it."""
    low, high = percentile_interval(replicates, confidence)
    if np.isfinite(estimate) and np.isfinite(low) and np.isfinite(high):
        low, high = min(float(low), estimate), max(float(high), estimate)
    return float(low), float(high)


def n_scored(first: Sequence[TopicScore], second: Sequence[TopicScore] | None = None) -> int:
    """Topics with a score (plug-in or corrected; with ``second``, a difference
    ``first − second``): a topic whose model cell has no usable post is not counted."""
    if second is None:
        return sum(bool(np.isfinite(s.plugin) or np.isfinite(s.corrected)) for s in first)
    return sum(
        bool(np.isfinite(a.plugin - b.plugin) or np.isfinite(a.corrected - b.corrected))
        for a, b in zip(first, second, strict=True)
    )
