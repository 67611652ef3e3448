"""The design job: predicted precision per classifier from the human posts alone, and its tables.

``predict_design`` is pure (a frame of classified human posts in, frames out);
``run_design_stage`` reads the ingested posts and their affect files and writes the tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from affalign.align import Counting, pattern_moments, post_vectors
from affalign.design.precision import (
    CellDraws,
    minimum_detectable_effect,
    model_level_halfwidth,
    simulate_cells,
    steering_shift,
    tendency_shift,
)
from affalign.io import derive_seed, join_affect, labels_of, write_csv, write_table

IDENTITY = "identity"
OTHER_GROUP = "other group"
# Model sizes considered, as multiples of generation.n_per_shard.
SIZE_MULTIPLES = (1, 2, 4, 8)
# Simulated studies behind each power estimate of the minimum detectable effects.
POWER_DRAWS = 400

CELL_SCHEMA = {
    "issue": pl.String,
    "topic": pl.String,
    "group": pl.String,
    "n_group_posts": pl.Int64,
    "n_model": pl.Int64,
    "scenario": pl.String,
    "sd": pl.Float64,
    "halfwidth": pl.Float64,
}
SUMMARY_SCHEMA = {
    "issue": pl.String,
    "group": pl.String,
    "n_model": pl.Int64,
    "n_topics": pl.Int64,
    "configured_topics": pl.Boolean,
    "cell_halfwidth": pl.Float64,
    "model_level_halfwidth": pl.Float64,
    "mde_tendency": pl.Float64,
    "mde_steerability": pl.Float64,
    "mde_differential": pl.Float64,
}


@dataclass(frozen=True)
class DesignSettings:
    """What the predictions assume: the configured posts per shard, groups, interval level,
    test level, bootstrap replicates, simulated studies per cell option, seed and counting."""

    n_per_shard: int
    groups: tuple[str, str] = ("liberal", "conservative")
    confidence: float = 0.95
    alpha: float = 0.05
    replicates: int = 200
    draws: int = 100
    seed: int = 0
    none_bin: bool = False

    def sizes(self) -> list[int]:
        return [self.n_per_shard * multiple for multiple in SIZE_MULTIPLES]

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DesignSettings:
        """The settings of the design job's recorded params (:func:`design_params`)."""
        return cls(
            n_per_shard=params["n_per_shard"],
            groups=tuple(params["groups"]),
            confidence=params["confidence"],
            alpha=params["alpha"],
            replicates=params["bootstrap_replicates"],
            draws=params["draws"],
            seed=params["seed"],
            none_bin=params["none_bin"],
        )


def design_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the design job records of a validated config (a change reruns it; the key order
    is part of the record)."""
    align = config["align"]
    return {
        "n_per_shard": config["generation"]["n_per_shard"],
        "groups": list(config["groups"]),
        **{key: align[key] for key in ("confidence", "alpha", "bootstrap_replicates")},
        "draws": config["design"]["draws"],
        "seed": config["seed"],
        "none_bin": align["none_bin"],
    }


def _topic_cells(posts: pl.DataFrame, labels: Sequence[str], groups: Sequence[str], counting: Counting):
    """Per topic: post counts of each group over the topic's label patterns, and their features."""
    flags = posts.select([f"y_{label}" for label in labels]).to_numpy().astype(bool)
    patterns, pattern_index = np.unique(flags, axis=0, return_inverse=True)
    features = pattern_moments(post_vectors(patterns, counting))
    counts = {}
    for group in groups:
        chosen = pattern_index[(posts["group"] == group).to_numpy()]
        counts[group] = np.bincount(chosen, minlength=patterns.shape[0]).astype(np.int64)
    return counts, features


def predict_design(
    human: pl.DataFrame, labels: Sequence[str], settings: DesignSettings
) -> dict[str, pl.DataFrame]:
    """Predicted precision per issue × topic × group × model cell size (``cells``) and per
    issue × group × size × topic count (``summary``) from classified human posts
    (``issue, topic, group, y_<label>``). See :mod:`affalign.design.precision`."""
    counting = Counting(none_bin=settings.none_bin)
    cell_rows, summary_rows = [], []
    for issue in sorted(human["issue"].unique().to_list()):
        posts = human.filter(pl.col("issue") == issue)
        per_topic = {}
        for topic in sorted(posts["topic"].unique().to_list()):
            topic_posts = posts.filter(pl.col("topic") == topic)
            counts, features = _topic_cells(topic_posts, labels, settings.groups, counting)
            if all(counts[g].sum() >= 2 for g in settings.groups):
                per_topic[topic] = (counts, features)
        for n_model in settings.sizes():
            cells, summary = _issue_at_size(issue, per_topic, n_model, settings)
            cell_rows += cells
            summary_rows += summary
    return {
        "cells": pl.DataFrame(cell_rows, schema=CELL_SCHEMA, orient="row"),
        "summary": pl.DataFrame(summary_rows, schema=SUMMARY_SCHEMA, orient="row"),
    }


def _issue_at_size(issue: str, per_topic: dict, n_model: int, settings: DesignSettings) -> tuple[list, list]:
    """Cell rows and summary rows of one issue for model cells of ``n_model`` posts."""
    first, second = settings.groups
    seed = settings.seed
    identity: dict[str, list[CellDraws]] = {g: [] for g in settings.groups}
    cell_rows = []
    for topic, (counts, features) in per_topic.items():
        for group in settings.groups:
            other = second if group == first else first
            for scenario, source in ((IDENTITY, counts[group]), (OTHER_GROUP, counts[other])):
                rng = np.random.default_rng(
                    derive_seed(seed, "design", issue, topic, group, n_model, scenario)
                )
                draws = simulate_cells(
                    source, counts[group], features, n_model, settings.draws, settings.replicates, rng
                )
                if scenario == IDENTITY:
                    identity[group].append(draws)
                size = int(counts[group].sum())
                width = draws.halfwidth(settings.confidence)
                cell_rows.append((issue, topic, group, size, n_model, scenario, draws.sd(), width))
    summary_rows = []
    configured = len(per_topic)
    topics = [{"counts": counts, "features": features} for counts, features in per_topic.values()]
    for n_topics in (configured, 2 * configured):
        # More topics: the same topics again, each drawn anew.
        repeated = topics * (n_topics // max(configured, 1))
        mde_seed = derive_seed(seed, "design-mde", issue, n_model, n_topics)
        rng = np.random.default_rng(mde_seed)
        shift = tendency_shift(repeated, settings.groups, n_model, POWER_DRAWS, rng)
        tendency_mde = minimum_detectable_effect(shift, settings.alpha, POWER_DRAWS, mde_seed)
        for group in settings.groups:
            other = second if group == first else first
            shift = steering_shift(repeated, group, other, n_model, POWER_DRAWS, rng)
            steer_mde = minimum_detectable_effect(shift, settings.alpha, POWER_DRAWS, mde_seed)
            draws = identity[group]
            halfwidth = float(np.mean([d.halfwidth(settings.confidence) for d in draws])) if draws else np.nan
            level = np.nan
            if draws and n_topics == configured:
                level = model_level_halfwidth(draws, settings.confidence, rng)
            # Differential steerability: two model cells against one group cell, as steerability.
            summary_rows.append((issue, group, n_model, n_topics, n_topics == configured, halfwidth, level,
                                 tendency_mde, steer_mde, steer_mde))  # fmt: skip
    return cell_rows, summary_rows


def run_design_stage(
    human: Sequence[str | Path],
    human_affect: Sequence[str | Path],
    settings: DesignSettings,
    outputs: dict[str, str],
    classifier: str,
) -> None:
    """Read ingested human posts and their affect files, predict, write ``cells`` and ``summary``
    (parquet with provenance, and CSV)."""
    labels = labels_of(human_affect[0])
    joined = join_affect(human, human_affect, ["issue", "topic", "group"]).collect()
    tables = predict_design(joined, labels, settings)
    provenance = {
        "stage": "design",
        "classifier": classifier,
        "labels": list(labels),
        "n_per_shard": settings.n_per_shard,
        "sizes": settings.sizes(),
        "draws": settings.draws,
        "bootstrap_replicates": settings.replicates,
        "confidence": settings.confidence,
        "alpha": settings.alpha,
        "seed": settings.seed,
        "assumptions": "model posts as variable as the group's own; exchangeable topics with one true "
        "alignment; per-topic test noise normal (affalign.design.precision)",
    }
    for name in ("cells", "summary"):
        write_table(tables[name], outputs[name], provenance)
        write_csv(tables[name], outputs[f"{name}_csv"])
    print(tables["summary"].filter(pl.col("configured_topics")).sort(["issue", "group", "n_model"]))
