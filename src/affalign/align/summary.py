"""Model-level tables over topics: the summary per model × prompt type × issue × group
(means with two-stage intervals, the gap to the baseline, the share of topics tested below
it), the below-baseline shares and the counting sensitivity of the model-level conclusions.
Built from the scores of :class:`affalign.align.scoring.TopicScorer` and, for the
sensitivity, the tendency and steerability tables of :mod:`affalign.align.comparisons`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import polars as pl

from affalign.align.inference import hierarchical_means
from affalign.align.scoring import (
    Counting,
    TopicScorer,
    estimate_interval,
    finite_mean,
    n_scored,
    table_of,
)
from affalign.io import derive_seed
from affalign.stats import wilson_interval

HIERARCHICAL_DRAWS = 2000


@dataclass(frozen=True)
class ModelSummaryRow:
    """Means over the topics of one model × prompt type × issue × group, with two-stage
    intervals, the gap to the baseline and the share of topics tested below it."""

    model: str
    prompt_type: str
    issue: str
    group: str
    n_topics: int
    alignment: float
    ceiling: float
    alignment_corrected: float
    corrected_low: float
    corrected_high: float
    interval_ok: bool
    ceiling_corrected: float
    baseline_corrected: float
    baseline_gap: float
    gap_low: float
    gap_high: float
    n_below: int
    n_tested: int
    share_below_tested: float
    share_below_low: float
    share_below_high: float
    unlabelled_model: float


@dataclass(frozen=True)
class BelowBaselineTest:
    """One alignment row's corrected gap to the baseline on its topic and the one-sided
    bootstrap p-value that it lies below the baseline."""

    model: str
    prompt_type: str
    issue: str
    topic: str
    group: str
    baseline_gap: float
    p_below_baseline: float


def model_level(scorer: TopicScorer, variant: Counting) -> tuple[pl.DataFrame, list[BelowBaselineTest]]:
    """The model-level summary of one counting variant, and the per-row below-baseline tests."""
    scored = scorer.scored[variant]
    settings = scorer.settings
    configured = variant == scorer.variants[0]
    topics: dict[tuple, list[str]] = defaultdict(list)
    for model, prompt_type, issue, topic, group in sorted(scored.rows):
        topics[(model, prompt_type, issue, group)].append(topic)
    rows, tests = [], []
    for (model, prompt_type, issue, group), topic_list in sorted(topics.items()):
        scores = [scored.rows[(model, prompt_type, issue, t, group)] for t in topic_list]
        bases = [scored.baseline.get((issue, t)) for t in topic_list]
        rng = np.random.default_rng(
            derive_seed(settings.seed, "model-level", model, prompt_type, issue, group)
        )
        corrected = hierarchical_means(np.vstack([s.corrected_reps for s in scores]), HIERARCHICAL_DRAWS, rng)
        corrected_low, corrected_high = estimate_interval(
            finite_mean([s.corrected for s in scores]), corrected, settings.confidence
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
            tests.append(
                BelowBaselineTest(model, prompt_type, issue, topic, group, float(gap), float(p_below))
            )
            if np.isfinite(gap):
                gaps.append(gap)
                gap_reps.append(replicate_gaps)
                below.append(bool(p_below < settings.alpha))
        if gap_reps:
            gap_low, gap_high = estimate_interval(
                finite_mean(gaps),
                hierarchical_means(np.vstack(gap_reps), HIERARCHICAL_DRAWS, rng),
                settings.confidence,
            )
        else:
            gap_low = gap_high = float("nan")
        share_low, share_high = wilson_interval(sum(below), len(below), settings.confidence)
        references = [scorer.references.get((model, prompt_type, issue, t, group)) for t in topic_list]
        references = [r for r in references if r is not None] if configured else []
        rows.append(
            ModelSummaryRow(
                model=model,
                prompt_type=prompt_type,
                issue=issue,
                group=group,
                n_topics=n_scored(scores),
                alignment=finite_mean([s.plugin for s in scores]),
                ceiling=finite_mean([r.ceiling for r in references]),
                alignment_corrected=finite_mean([s.corrected for s in scores]),
                corrected_low=corrected_low,
                corrected_high=corrected_high,
                interval_ok=scorer.measured(model, prompt_type, issue, topic_list, group),
                ceiling_corrected=finite_mean([r.ceiling_corrected for r in references]),
                baseline_corrected=finite_mean([b.corrected for b in bases if b is not None]),
                baseline_gap=finite_mean(gaps),
                gap_low=gap_low,
                gap_high=gap_high,
                n_below=sum(below),
                n_tested=len(below),
                share_below_tested=sum(below) / len(below) if below else float("nan"),
                share_below_low=share_low,
                share_below_high=share_high,
                unlabelled_model=finite_mean(
                    [scorer.sizes[(model, prompt_type, issue, t)][1] for t in topic_list]
                ),
            )
        )
    return table_of(ModelSummaryRow, rows), tests


def below_baseline_shares(
    alignment: pl.DataFrame, baseline: pl.DataFrame, summary: pl.DataFrame
) -> pl.DataFrame:
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


@dataclass(frozen=True)
class SensitivityRow:
    """How many model-level conclusions of one kind change under one counting variant
    against the configured counting, and the largest change of their estimates."""

    counting: str
    unlabelled: str
    configured: bool
    conclusion: str
    n_conclusions: int
    n_changed: int
    max_abs_change: float


def counting_sensitivity(scorer: TopicScorer, tables: dict[Counting, tuple]) -> pl.DataFrame:
    alpha = scorer.settings.alpha
    reference = _conclusions(*tables[scorer.variants[0]], alpha)
    rows = []
    for variant in scorer.variants:
        found = _conclusions(*tables[variant], alpha)
        counting, unlabelled = variant.describe()
        for kind in ("tendency", "steerability", "differential steerability", "gap to baseline"):
            keys = [k for k in reference if k[0] == kind and k in found]
            shifts = [
                abs(found[k][1] - reference[k][1])
                for k in keys
                if found[k][1] is not None and reference[k][1] is not None
                and np.isfinite(found[k][1]) and np.isfinite(reference[k][1])
            ]  # fmt: skip
            rows.append(
                SensitivityRow(
                    counting=counting,
                    unlabelled=unlabelled,
                    configured=variant == scorer.variants[0],
                    conclusion=kind,
                    n_conclusions=len(keys),
                    n_changed=sum(reference[k][0] != found[k][0] for k in keys),
                    max_abs_change=max(shifts) if shifts else float("nan"),
                )
            )
    return table_of(SensitivityRow, rows)
