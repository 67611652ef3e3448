"""Tables over topics: scores with their reference points, intervals and tests; tendency,
steerability, the baseline, the model-level summary and the counting sensitivity.

Pure functions over polars frames (no I/O). Inputs are the per-post affect tables of the
align stage: model posts keyed by ``model, prompt_type, issue, topic`` and human posts keyed
by ``issue, topic, group``, each with one boolean ``y_<label>`` column per label. Each topic
is scored by :class:`affalign.align.scoring.TopicScorer`; the tables here summarise those
scores over topics, one named row (a dataclass, or for the two scored tables a dict keyed
by column) per table row.

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
from dataclasses import dataclass

import numpy as np
import polars as pl

from affalign.align.resampling import liberal_tendency
from affalign.align.scoring import (
    COUNTING_VARIANTS,
    HUMAN_KEYS,
    MEASURED_GROUP_POSTS,
    MEASURED_MODEL_POSTS,
    MODEL_KEYS,
    BootstrapSettings,
    Cell,
    Counting,
    ReferencePoints,
    TopicScore,
    TopicScorer,
    VariantScores,
    cells_of,
    estimate_interval,
    finite_mean,
    n_scored,
    sizes_measured,
    table_of,
)
from affalign.align.summary import BelowBaselineTest, below_baseline_shares, counting_sensitivity, model_level
from affalign.io import DEFAULT_PROMPT_TYPE, derive_seed
from affalign.stats import benjamini_hochberg, holm, sign_flip_test

__all__ = [
    "HUMAN_KEYS",
    "MODEL_KEYS",
    "SCORE_INFERENCE_COLUMNS",
    "BootstrapSettings",
    "Counting",
    "bootstrap_comparisons",
]

# Random sign vectors per sign-flip test over topics (every vector is enumerated up to 15
# topics): smallest p 1e-4 beyond that.
SIGN_FLIP_DRAWS = 9999


# --- scored comparisons: alignment and the partisan baseline --------------------------------

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


@dataclass(frozen=True)
class Sides:
    """Column names of a scored table's two sides: keys, post counts and unlabelled shares."""

    keys: tuple[str, ...]
    sizes: tuple[str, str]
    unlabelled: tuple[str, str]

    def schema(self) -> dict[str, pl.DataType]:
        return {
            **dict.fromkeys(self.keys, pl.String),
            "jsd": pl.Float64,
            "alignment": pl.Float64,
            **dict.fromkeys(self.sizes, pl.Int64),
            **dict.fromkeys(self.unlabelled, pl.Float64),
            **dict.fromkeys(SCORE_INFERENCE_COLUMNS, pl.Float64),
            "interval_ok": pl.Boolean,
        }


ALIGNMENT_SIDES = Sides((*MODEL_KEYS, "group"), ("n_model_posts", "n_human_posts"),
                        ("unlabelled_model", "unlabelled_human"))  # fmt: skip
BASELINE_SIDES = Sides(("issue", "topic", "group_a", "group_b"), ("n_posts_a", "n_posts_b"),
                       ("unlabelled_a", "unlabelled_b"))  # fmt: skip


def _scored_row(
    key: tuple, score: TopicScore, reference: ReferencePoints, sides: Sides, sizes: Sequence[tuple],
    confidence: float, measured: tuple[int, int],
) -> dict:  # fmt: skip
    """One row of a scored table, keyed by column; ``sizes`` holds each side's (posts,
    unlabelled share), ``measured`` the smallest size of each side whose coverage was measured."""
    (n_first, unlabelled_first), (n_second, unlabelled_second) = sizes
    corrected_low, corrected_high = estimate_interval(score.corrected, score.corrected_reps, confidence)
    return {
        **dict(zip(sides.keys, key, strict=True)),
        "jsd": 1.0 - score.plugin,
        "alignment": score.plugin,
        sides.sizes[0]: n_first,
        sides.sizes[1]: n_second,
        sides.unlabelled[0]: unlabelled_first,
        sides.unlabelled[1]: unlabelled_second,
        "ceiling": reference.ceiling,
        "alignment_corrected": score.corrected,
        "corrected_low": corrected_low,
        "corrected_high": corrected_high,
        "interval_ok": sizes_measured(n_first, n_second, measured),
        "ceiling_corrected": reference.ceiling_corrected,
        "p_distinguishable": reference.p_distinguishable,
    }


def _scored_table(rows: list[dict], sides: Sides) -> pl.DataFrame:
    schema = sides.schema()
    return pl.DataFrame({column: [row[column] for row in rows] for column in schema}, schema=schema)


def _alignment_table(scorer: TopicScorer) -> pl.DataFrame:
    scored = scorer.scored[scorer.variants[0]]
    rows = []
    for key in sorted(scored.rows):
        model, prompt_type, issue, topic, group = key
        sizes = (scorer.sizes[(model, prompt_type, issue, topic)], scorer.sizes[(issue, topic, group)])
        rows.append(
            _scored_row(key, scored.rows[key], scorer.references[key], ALIGNMENT_SIDES, sizes,
                        scorer.settings.confidence, (MEASURED_MODEL_POSTS, MEASURED_GROUP_POSTS))
        )  # fmt: skip
    return _scored_table(rows, ALIGNMENT_SIDES)


def _baseline_table(scorer: TopicScorer) -> pl.DataFrame:
    scored = scorer.scored[scorer.variants[0]]
    group_a, group_b = scorer.groups[:2] if len(scorer.groups) >= 2 else (None, None)
    rows = []
    for (issue, topic), score in sorted(scored.baseline.items()):
        sizes = (scorer.sizes[(issue, topic, group_a)], scorer.sizes[(issue, topic, group_b)])
        rows.append(
            _scored_row((issue, topic, group_a, group_b), score, scorer.baseline_references[(issue, topic)],
                        BASELINE_SIDES, sizes, scorer.settings.confidence,
                        (MEASURED_GROUP_POSTS, MEASURED_GROUP_POSTS))
        )  # fmt: skip
    return _scored_table(rows, BASELINE_SIDES)


# --- paired comparisons over topics: tendency and steerability ------------------------------


@dataclass(frozen=True)
class PairedSummary:
    """Per-topic differences of two comparisons, summarised over topics: the mean corrected
    difference with its interval, its sign-flip test and the smallest p-value the topics can
    reach."""

    corrected: float
    corrected_low: float
    corrected_high: float
    p_signflip: float
    min_attainable_p: float


def _topic_means(replicates: list[np.ndarray]) -> np.ndarray:
    if not replicates:
        return np.array([np.nan])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a replicate undefined in every topic
        return np.nanmean(np.vstack(replicates), axis=0)


def _paired(
    first: Sequence[TopicScore], second: Sequence[TopicScore], settings: BootstrapSettings, *coordinates
) -> PairedSummary:
    """``first − second`` topic by topic (same topics, same order); the sign-flip test is
    seeded by the global seed and ``coordinates``."""
    pairs = list(zip(first, second, strict=True))
    differences = [a.corrected - b.corrected for a, b in pairs]
    corrected_low, corrected_high = estimate_interval(
        finite_mean(differences),
        _topic_means([a.corrected_reps - b.corrected_reps for a, b in pairs]),
        settings.confidence,
    )
    rng = np.random.default_rng(derive_seed(settings.seed, "sign-flip", *coordinates))
    test = sign_flip_test(differences, SIGN_FLIP_DRAWS, rng)
    return PairedSummary(
        finite_mean(differences), corrected_low, corrected_high, test.p_value, test.min_attainable_p
    )


def _adjust(frame: pl.DataFrame, prefixes: dict[str, str]) -> pl.DataFrame:
    """Holm and BH columns (``<prefix>p_holm``, ``<prefix>p_bh``) for the p-value columns
    named in ``prefixes``, all of them one family; each pair follows its p-value column."""
    p_values = np.array([frame[column].to_numpy().astype(float) for column in prefixes])
    p_values = p_values.reshape(len(prefixes), frame.height)
    holm_all, bh_all = holm(p_values), benjamini_hochberg(p_values)
    added, order = [], []
    for column in frame.columns:
        order.append(column)
        if column in prefixes:
            i, prefix = list(prefixes).index(column), prefixes[column]
            added += [pl.Series(f"{prefix}p_holm", holm_all[i]), pl.Series(f"{prefix}p_bh", bh_all[i])]
            order += [f"{prefix}p_holm", f"{prefix}p_bh"]
    return frame.with_columns(added).select(order)


@dataclass(frozen=True)
class TendencyRow:
    """Alignment with the liberal group − with the conservative group, over the topics of one
    model × prompt type × issue: the published plug-in Wilcoxon test and the corrected sign-flip test."""

    model: str
    issue: str
    prompt_type: str
    tendency: float
    n_topics: int
    wilcoxon_statistic: float
    p_value: float
    tendency_corrected: float
    corrected_low: float
    corrected_high: float
    interval_ok: bool
    p_signflip: float
    min_attainable_p: float


def _tendency_table(scorer: TopicScorer, variant: Counting) -> pl.DataFrame:
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
            TendencyRow(
                model=model,
                issue=issue,
                prompt_type=prompt_type,
                tendency=plugin["tendency"],
                n_topics=plugin["n_topics"],
                wilcoxon_statistic=plugin["wilcoxon_statistic"],
                p_value=plugin["p_value"],
                tendency_corrected=paired.corrected,
                corrected_low=paired.corrected_low,
                corrected_high=paired.corrected_high,
                interval_ok=all(
                    scorer.measured(model, prompt_type, issue, topics, g) for g in (liberal, conservative)
                ),
                p_signflip=paired.p_signflip,
                min_attainable_p=paired.min_attainable_p,
            )
        )
    return _adjust(table_of(TendencyRow, rows), {"p_signflip": ""})


@dataclass(frozen=True)
class SteerabilityRow:
    """Alignment with a group when steered towards it − unsteered (``steerability``), and
    when steered towards it − towards the other group(s) (``differential``), over the topics
    of one model × issue × group."""

    model: str
    issue: str
    group: str
    steerability: float
    n_topics: int
    steerability_corrected: float
    corrected_low: float
    corrected_high: float
    interval_ok: bool
    p_signflip: float
    min_attainable_p: float
    differential: float = float("nan")
    differential_low: float = float("nan")
    differential_high: float = float("nan")
    differential_n_topics: int = 0
    differential_p_signflip: float = float("nan")
    differential_min_attainable_p: float = float("nan")


def _steerability_table(scorer: TopicScorer, variant: Counting) -> pl.DataFrame:
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
            SteerabilityRow(
                model=model,
                issue=issue,
                group=group,
                steerability=finite_mean(shifts),
                n_topics=n_scored(steered, default),
                steerability_corrected=paired.corrected,
                corrected_low=paired.corrected_low,
                corrected_high=paired.corrected_high,
                interval_ok=all(
                    scorer.measured(model, p, issue, topic_list, group) for p in (DEFAULT_PROMPT_TYPE, group)
                ),
                p_signflip=paired.p_signflip,
                min_attainable_p=paired.min_attainable_p,
                **differential,
            )
        )
    return _adjust(
        table_of(SteerabilityRow, rows), {"p_signflip": "", "differential_p_signflip": "differential_"}
    )


def _differential(scored: VariantScores, groups, model, issue, group, settings) -> dict[str, float | int]:
    """Alignment with ``group`` when steered towards it − when steered towards the other
    group(s) (their mean), per topic: the ``differential*`` columns of a steerability row
    (none where no topic has both)."""
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
            TopicScore(
                float(np.mean([o.corrected for o in other])),
                np.mean([o.corrected_reps for o in other], axis=0),
            )
        )
    if not towards:
        return {}
    paired = _paired(towards, away, settings, "differential", model, issue, group)
    return {
        "differential": paired.corrected,
        "differential_low": paired.corrected_low,
        "differential_high": paired.corrected_high,
        "differential_n_topics": len(towards),
        "differential_p_signflip": paired.p_signflip,
        "differential_min_attainable_p": paired.min_attainable_p,
    }


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
    scorer = TopicScorer(labels, groups, settings, smoothing, variants)
    model_cells = cells_of(model_posts, MODEL_KEYS, labels)
    human_cells = cells_of(human_posts, HUMAN_KEYS, labels)
    by_topic: dict[tuple, list[Cell]] = defaultdict(list)
    for key, cell in model_cells.items():
        by_topic[key[2:]].append(cell)
    for issue, topic in sorted({k[:2] for k in human_cells} | set(by_topic)):
        human = {g: human_cells[(issue, topic, g)] for g in groups if (issue, topic, g) in human_cells}
        scorer.topic(issue, topic, human, by_topic.get((issue, topic), []))

    alignment = _alignment_table(scorer)
    baseline = _baseline_table(scorer)
    tables = {}
    below_tests = []
    for variant in variants:
        summary, tests = model_level(scorer, variant)
        tables[variant] = (_tendency_table(scorer, variant), _steerability_table(scorer, variant), summary)
        if variant == configured:
            below_tests = tests
    gaps = table_of(BelowBaselineTest, below_tests)
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
        "below_baseline": below_baseline_shares(alignment, baseline, summary),
        "model_summary": summary.fill_nan(None),
    }
    if sensitivity:
        results["sensitivity"] = counting_sensitivity(scorer, tables)
    return results
