"""The align stage: join affect files with their posts and score models against groups.

Outputs (per classifier), all tidy except the matrix:

* distributions: ``source`` (``human`` or a model), ``prompt_type`` (null for human),
  ``issue``, ``topic``, ``group`` (null for models), ``label``, ``count``, ``n_posts``,
  ``total``, ``p``;
* alignment: ``model``, ``prompt_type``, ``issue``, ``topic``, ``group``, ``jsd``,
  ``alignment`` (1 − JSD, base 2), ``n_model_posts``, ``n_human_posts``;
* partisan baseline: ``issue``, ``topic``, ``group_a``, ``group_b``, ``jsd``,
  ``alignment``, ``n_posts_a``, ``n_posts_b``;
* dropped: generations left out, by ``model``, ``reason`` and ``rows``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from affalign.align import comparisons
from affalign.align.comparisons import BootstrapSettings, bootstrap_comparisons
from affalign.align.distributions import label_distributions
from affalign.align.divergence import plutchik_smoothing_matrix
from affalign.classify import NONE_LABEL, label_column
from affalign.io import read_provenance, write_csv, write_table

MODEL_KEYS = list(comparisons.MODEL_KEYS)
HUMAN_KEYS = list(comparisons.HUMAN_KEYS)
ALIGNMENT_COLUMNS = [
    "model",
    "prompt_type",
    "issue",
    "topic",
    "group",
    "jsd",
    "alignment",
    "n_model_posts",
    "n_human_posts",
]
INTERVAL_COLUMNS = ["alignment_low", "alignment_high"]
BASELINE_COLUMNS = [
    "issue",
    "topic",
    "group_a",
    "group_b",
    "jsd",
    "alignment",
    "n_posts_a",
    "n_posts_b",
    *INTERVAL_COLUMNS,
]
FLAGS = {"is_empty": "empty text", "is_refusal": "refusal", "is_degenerate": "degenerate"}


@dataclass(frozen=True)
class DropPolicy:
    empty: bool = True
    refusals: bool = True
    degenerate: bool = False

    def flags(self) -> list[str]:
        chosen = {"is_empty": self.empty, "is_refusal": self.refusals, "is_degenerate": self.degenerate}
        return [flag for flag, on in chosen.items() if on]


def labels_of(affect_path: str | Path) -> list[str]:
    labels = read_provenance(affect_path).get("labels")
    if not labels:
        raise ValueError(f"{affect_path} records no labels in its provenance")
    return list(labels)


def join_affect(
    posts: Sequence[str | Path], affect: Sequence[str | Path], columns: Sequence[str]
) -> pl.LazyFrame:
    """Posts (``columns`` of them) joined 1:1 with their affect rows on ``post_id``."""
    post_frame = pl.scan_parquet([str(p) for p in posts]).select(["post_id", *columns])
    affect_frame = pl.scan_parquet([str(a) for a in affect])
    return post_frame.join(affect_frame, on="post_id", how="inner", validate="1:1")


def apply_drop_policy(generated: pl.DataFrame, policy: DropPolicy) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Remove flagged generations; count what was removed per model and first matching reason."""
    flags = policy.flags()
    if not flags:
        empty = pl.DataFrame(schema={"model": pl.String, "reason": pl.String, "rows": pl.Int64})
        return generated, empty
    reason = pl.when(pl.col(flags[0])).then(pl.lit(FLAGS[flags[0]]))
    for flag in flags[1:]:
        reason = reason.when(pl.col(flag)).then(pl.lit(FLAGS[flag]))
    marked = generated.with_columns(reason.otherwise(None).alias("drop_reason"))
    dropped = (
        marked.filter(pl.col("drop_reason").is_not_null())
        .group_by(["model", "drop_reason"])
        .agg(pl.len().cast(pl.Int64).alias("rows"))
        .rename({"drop_reason": "reason"})
        .sort(["model", "reason"])
    )
    return marked.filter(pl.col("drop_reason").is_null()).drop("drop_reason"), dropped


def distributions_of(
    generated: pl.DataFrame, human: pl.DataFrame, labels: Sequence[str], none_bin: bool = False
) -> dict[str, pl.DataFrame]:
    """Label distributions of every model cell and human group cell (pure)."""
    model_dist = label_distributions(generated, MODEL_KEYS, labels, none_bin)
    human_dist = label_distributions(human, HUMAN_KEYS, labels, none_bin)
    distributions = pl.concat(
        [
            model_dist.rename({"model": "source"}).with_columns(pl.lit(None, pl.String).alias("group")),
            human_dist.with_columns(
                pl.lit("human").alias("source"), pl.lit(None, pl.String).alias("prompt_type")
            ),
        ],
        how="diagonal",
    ).select(["source", "prompt_type", "issue", "topic", "group", "label", "count", "n_posts", "total", "p"])
    return {
        "distributions": distributions.with_columns(pl.col("label").cast(pl.String)),
        "model": model_dist,
        "human": human_dist,
    }


def _cell_sizes(distribution: pl.DataFrame, keys: Sequence[str], name: str) -> pl.DataFrame:
    return distribution.group_by(list(keys)).agg(pl.col("n_posts").first().alias(name))


def alignment_matrix(alignment: pl.DataFrame, baseline: pl.DataFrame) -> pl.DataFrame:
    """Readable wide matrix: one row per model × prompt type × group (and one per baseline),
    one column per ``issue/topic``; cells are 1 − JSD rounded to 4 decimals."""
    rows = alignment.select(
        pl.col("model").alias("row"),
        "prompt_type",
        pl.col("group").alias("compared_with"),
        (pl.col("issue") + "/" + pl.col("topic")).alias("column"),
        "alignment",
    )
    base = baseline.select(
        pl.lit("partisan baseline").alias("row"),
        pl.lit(None, pl.String).alias("prompt_type"),
        (pl.col("group_a") + " vs " + pl.col("group_b")).alias("compared_with"),
        (pl.col("issue") + "/" + pl.col("topic")).alias("column"),
        "alignment",
    )
    columns = sorted(rows["column"].unique().to_list())
    wide = (
        pl.concat([rows, base])
        .with_columns(pl.col("alignment").round(4))
        .pivot(on="column", index=["row", "prompt_type", "compared_with"], values="alignment")
    )
    return wide.select(["row", "prompt_type", "compared_with", *[c for c in columns if c in wide.columns]])


@dataclass(frozen=True)
class AlignSettings:
    """How distributions are built and compared (recorded in every align output)."""

    groups: tuple[str, ...] = ("liberal", "conservative")
    none_bin: bool = False
    policy: DropPolicy = field(default_factory=DropPolicy)
    bootstrap: BootstrapSettings = field(default_factory=BootstrapSettings)
    plutchik_weight: float | None = None

    def describe(self) -> dict:
        return {
            "none_bin": self.none_bin,
            "unlabelled_posts": "counted in a 'none' bin"
            if self.none_bin
            else "add nothing to the distribution",
            "drop_policy": self.policy.flags(),
            "bootstrap_replicates": self.bootstrap.replicates,
            "confidence": self.bootstrap.confidence,
            "bootstrap_seed": self.bootstrap.seed,
            "plutchik_smoothing": self.plutchik_weight,
            "score": "1 - Jensen-Shannon distance, log base 2",
        }


def with_none_label(frame: pl.DataFrame, labels: Sequence[str]) -> pl.DataFrame:
    """Add ``y_none``: the post carries none of ``labels``."""
    carried = pl.any_horizontal([pl.col(label_column(label)) for label in labels])
    return frame.with_columns((~carried).alias(label_column(NONE_LABEL)))


def compare(
    model_posts: pl.DataFrame, human_posts: pl.DataFrame, labels: Sequence[str], settings: AlignSettings
) -> dict[str, pl.DataFrame]:
    """Distributions, scores with their intervals (one computation) and the comparisons."""
    found = distributions_of(model_posts, human_posts, labels, settings.none_bin)
    compared_labels = [*labels, NONE_LABEL] if settings.none_bin else list(labels)
    if settings.none_bin:
        model_posts, human_posts = with_none_label(model_posts, labels), with_none_label(human_posts, labels)
    smoothing = (
        plutchik_smoothing_matrix(compared_labels, settings.plutchik_weight)
        if settings.plutchik_weight is not None
        else None
    )
    scored = bootstrap_comparisons(
        model_posts, human_posts, compared_labels, settings.groups, settings.bootstrap, smoothing
    )
    model_sizes = _cell_sizes(found["model"], MODEL_KEYS, "n_model_posts")
    human_sizes = _cell_sizes(found["human"], HUMAN_KEYS, "n_human_posts")
    alignment = (
        scored["alignment"]
        .join(model_sizes, on=MODEL_KEYS, how="left")
        .join(human_sizes, on=HUMAN_KEYS, how="left")
        .select([*ALIGNMENT_COLUMNS, *INTERVAL_COLUMNS])
        .sort(["model", "prompt_type", "issue", "topic", "group"])
    )
    side_sizes = human_sizes.rename({"n_human_posts": "n_posts"})
    baseline = (
        scored["baseline"]
        .join(
            side_sizes.rename({"group": "group_a", "n_posts": "n_posts_a"}), on=["issue", "topic", "group_a"]
        )
        .join(
            side_sizes.rename({"group": "group_b", "n_posts": "n_posts_b"}), on=["issue", "topic", "group_b"]
        )
        .select(BASELINE_COLUMNS)
        .sort(["issue", "topic"])
    )
    return {
        "distributions": found["distributions"],
        "alignment": alignment,
        "baseline": baseline,
        "tendency": scored["tendency"],
        "steerability": scored["steerability"],
        "below_baseline": scored["below_baseline"],
    }


def run_align_stage(
    *,
    generated: Sequence[str | Path],
    generated_affect: Sequence[str | Path],
    human: Sequence[str | Path],
    human_affect: Sequence[str | Path],
    settings: AlignSettings,
    outputs: dict[str, str],
    classifier: str,
) -> None:
    """Read the shards of one classifier, score them and write the align outputs."""
    labels = labels_of(human_affect[0])
    for path in [*human_affect, *generated_affect]:
        if labels_of(path) != labels:
            raise ValueError(f"{path} has labels {labels_of(path)}, expected {labels} like {human_affect[0]}")
    flags = list(FLAGS)
    model_posts = join_affect(generated, generated_affect, [*MODEL_KEYS, *flags]).collect()
    human_posts = join_affect(human, human_affect, HUMAN_KEYS).collect()
    kept, dropped = apply_drop_policy(model_posts, settings.policy)
    results = compare(kept, human_posts, labels, settings)
    provenance = {
        "stage": "align",
        "classifier": classifier,
        "labels": labels,
        **settings.describe(),
        "generated_posts": model_posts.height,
        "generated_posts_kept": kept.height,
        "human_posts": human_posts.height,
    }
    for name in ("distributions", "alignment", "baseline", "tendency", "steerability"):
        write_table(results[name], outputs[name], provenance)
    write_csv(results["alignment"], outputs["alignment_csv"])
    write_csv(results["baseline"], outputs["baseline_csv"])
    write_csv(results["tendency"], outputs["tendency_csv"])
    write_csv(results["steerability"], outputs["steerability_csv"])
    write_csv(results["below_baseline"], outputs["below_baseline"])
    write_csv(alignment_matrix(results["alignment"], results["baseline"]), outputs["matrix"])
    write_csv(dropped, outputs["dropped"])
    print(
        f"[affalign] {classifier}: {kept.height}/{model_posts.height} generations kept; dropped:\n{dropped}"
    )
