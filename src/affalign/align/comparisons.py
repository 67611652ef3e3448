"""Bootstrap intervals, liberal tendency, steerability and the baseline comparison.

Pure functions over polars frames (no I/O). Inputs are the per-post affect tables of the
align stage: model posts keyed by ``model, prompt_type, issue, topic`` and human posts
keyed by ``issue, topic, group``, each with one boolean ``y_<label>`` column per label.
Posts are resampled with replacement within each cell (see :mod:`affalign.align.resampling`);
every cell draws from its own generator seeded by the global seed and the cell's keys, so
results do not depend on the order of cells.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from affalign.align.divergence import jensen_shannon_distance, smooth
from affalign.align.resampling import bootstrap_label_counts, liberal_tendency, percentile_interval
from affalign.classify import label_column
from affalign.generate import DEFAULT_PROMPT_TYPE
from affalign.io import derive_seed

MODEL_KEYS = ("model", "prompt_type", "issue", "topic")
HUMAN_KEYS = ("issue", "topic", "group")
INTERVAL = ("alignment_low", "alignment_high")


@dataclass(frozen=True)
class BootstrapSettings:
    replicates: int = 200
    confidence: float = 0.95
    seed: int = 0


def _cell_replicates(
    posts: pl.DataFrame, keys: Sequence[str], labels: Sequence[str], settings: BootstrapSettings
) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """Per cell: observed label counts (labels,) and replicate counts (replicates × labels)."""
    bits = [pl.col(label_column(label)).cast(pl.Int64) * (1 << i) for i, label in enumerate(labels)]
    patterns = (
        posts.lazy()
        .select([*keys, pl.sum_horizontal(bits).alias("pattern")])
        .group_by([*keys, "pattern"])
        .agg(pl.len().alias("posts"))
        .sort([*keys, "pattern"])
        .collect()
    )
    cells: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    powers = 1 << np.arange(len(labels))
    for key, group in patterns.group_by(list(keys), maintain_order=True):
        masks = group["pattern"].to_numpy()
        flags = (masks[:, None] & powers[None, :]) > 0
        counts = group["posts"].to_numpy()
        rng = np.random.default_rng(derive_seed(settings.seed, "bootstrap", *key))
        observed = counts @ flags.astype(float)
        cells[tuple(key)] = (observed, bootstrap_label_counts(flags, counts, settings.replicates, rng))
    return cells


def bootstrap_comparisons(
    model_posts: pl.DataFrame,
    human_posts: pl.DataFrame,
    labels: Sequence[str],
    groups: Sequence[str],
    settings: BootstrapSettings,
    smoothing: np.ndarray | None = None,
) -> dict[str, pl.DataFrame]:
    """Point scores with intervals, the baseline, liberal tendency and steerability.

    ``smoothing`` (labels × labels, e.g. Plutchik) is applied to every count vector before
    the distance. Returns frames ``alignment``, ``baseline``, ``tendency``,
    ``steerability`` and ``below_baseline``.
    """
    model_cells = _cell_replicates(model_posts, MODEL_KEYS, labels, settings)
    human_cells = _cell_replicates(human_posts, HUMAN_KEYS, labels, settings)

    def prepared(counts: np.ndarray) -> np.ndarray:
        return smooth(counts, smoothing) if smoothing is not None else counts

    def distance(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return jensen_shannon_distance(prepared(left), prepared(right))

    def score(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        return 1.0 - distance(left, right)

    alignment_rows, replicate_scores = [], {}
    for (model, prompt_type, issue, topic), (observed, replicates) in model_cells.items():
        for group in groups:
            human = human_cells.get((issue, topic, group))
            if human is None:
                continue
            jsd = float(distance(observed, human[0]))
            draws = score(replicates, human[1])
            replicate_scores[(model, prompt_type, issue, topic, group)] = draws
            low, high = percentile_interval(draws, settings.confidence)
            alignment_rows.append((model, prompt_type, issue, topic, group, jsd, 1.0 - jsd, low, high))
    alignment = pl.DataFrame(
        alignment_rows,
        schema=[*MODEL_KEYS, "group", "jsd", "alignment", *INTERVAL],
        orient="row",
    ).sort([*MODEL_KEYS, "group"])

    group_a, group_b = groups
    baseline_rows = []
    for issue, topic in sorted({(i, t) for i, t, _ in human_cells}):
        a, b = human_cells.get((issue, topic, group_a)), human_cells.get((issue, topic, group_b))
        if a is None or b is None:
            continue
        low, high = percentile_interval(score(a[1], b[1]), settings.confidence)
        jsd = float(distance(a[0], b[0]))
        baseline_rows.append((issue, topic, group_a, group_b, jsd, 1.0 - jsd, low, high))
    baseline = pl.DataFrame(
        baseline_rows,
        schema=[
            "issue",
            "topic",
            "group_a",
            "group_b",
            "jsd",
            "alignment",
            "alignment_low",
            "alignment_high",
        ],
        orient="row",
    )
    # An undefined score (a cell without labelled posts) is null, not NaN.
    alignment, baseline = (frame.fill_nan(None) for frame in (alignment, baseline))

    return {
        "alignment": alignment,
        "baseline": baseline,
        "tendency": _tendency(alignment, replicate_scores, groups, settings),
        "steerability": _steerability(alignment, replicate_scores, groups, settings),
        "below_baseline": _below_baseline(alignment, baseline),
    }


def _topic_means(replicates: list[np.ndarray]) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.vstack(replicates), axis=0) if replicates else np.array([np.nan])


def _tendency(
    alignment: pl.DataFrame, replicates: dict, groups: Sequence[str], settings: BootstrapSettings
) -> pl.DataFrame:
    liberal, conservative = groups if groups[0] == "liberal" else tuple(reversed(groups))
    wide = alignment.pivot(on="group", index=list(MODEL_KEYS), values="alignment")
    rows = []
    for (model, prompt_type, issue), cells in wide.group_by(
        ["model", "prompt_type", "issue"], maintain_order=True
    ):
        test = liberal_tendency(cells[liberal].to_list(), cells[conservative].to_list())
        differences = [
            replicates[(model, prompt_type, issue, topic, liberal)]
            - replicates[(model, prompt_type, issue, topic, conservative)]
            for topic in cells["topic"].to_list()
        ]
        low, high = percentile_interval(_topic_means(differences), settings.confidence)
        statistics = (
            test["tendency"],
            low,
            high,
            test["n_topics"],
            test["wilcoxon_statistic"],
            test["p_value"],
        )
        rows.append((model, issue, prompt_type, *statistics))
    return pl.DataFrame(
        rows,
        schema=[
            "model",
            "issue",
            "prompt_type",
            "tendency",
            "tendency_low",
            "tendency_high",
            "n_topics",
            "wilcoxon_statistic",
            "p_value",
        ],
        orient="row",
    ).sort(["model", "issue", "prompt_type"])


def _steerability(
    alignment: pl.DataFrame, replicates: dict, groups: Sequence[str], settings: BootstrapSettings
) -> pl.DataFrame:
    points = {
        tuple(row[:5]): row[5] for row in alignment.select([*MODEL_KEYS, "group", "alignment"]).iter_rows()
    }
    topics: dict[tuple, list[str]] = defaultdict(list)
    for model, prompt_type, issue, topic, group in points:
        if prompt_type == DEFAULT_PROMPT_TYPE:
            topics[(model, issue, group)].append(topic)
    rows = []
    for (model, issue, group), topic_list in sorted(topics.items()):
        if group not in groups:
            continue
        pairs = [t for t in topic_list if (model, group, issue, t, group) in points]
        if not pairs:
            continue
        steered = [(model, group, issue, t, group) for t in pairs]
        default = [(model, DEFAULT_PROMPT_TYPE, issue, t, group) for t in pairs]
        shifts = [points[s] - points[d] for s, d in zip(steered, default, strict=True)]
        draws = [replicates[s] - replicates[d] for s, d in zip(steered, default, strict=True)]
        low, high = percentile_interval(_topic_means(draws), settings.confidence)
        with np.errstate(invalid="ignore"):
            value = float(np.nanmean(shifts)) if pairs else float("nan")
        rows.append((model, issue, group, value, low, high, len(pairs)))
    return pl.DataFrame(
        rows,
        schema=[
            "model",
            "issue",
            "group",
            "steerability",
            "steerability_low",
            "steerability_high",
            "n_topics",
        ],
        orient="row",
    )


def _below_baseline(alignment: pl.DataFrame, baseline: pl.DataFrame) -> pl.DataFrame:
    joined = alignment.join(
        baseline.select("issue", "topic", pl.col("alignment").alias("baseline")),
        on=["issue", "topic"],
        how="inner",
    )
    return (
        joined.drop_nulls(["alignment", "baseline"])
        .filter(pl.col("alignment").is_not_nan() & pl.col("baseline").is_not_nan())
        .group_by(["model", "prompt_type", "issue", "group"])
        .agg(
            (pl.col("alignment") < pl.col("baseline")).mean().alias("share_below_baseline"),
            pl.len().alias("n_topics"),
        )
        .sort(["model", "prompt_type", "issue", "group"])
    )
