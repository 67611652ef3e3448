"""The align stage: join affect files with their posts and score models against groups.

Outputs (per classifier), all tidy except the matrix:

* distributions: ``source`` (``human`` or a model), ``prompt_type`` (null for human),
  ``issue``, ``topic``, ``group`` (null for models), ``label``, ``count``, ``n_posts``,
  ``total``, ``p``;
* alignment: ``model``, ``prompt_type``, ``issue``, ``topic``, ``group``, ``jsd``,
  ``alignment`` (1 − JSD, base 2), ``n_model_posts``, ``n_human_posts``, the plug-in
  interval, then the inference columns (:data:`ALIGNMENT_INFERENCE_COLUMNS`);
* partisan baseline: ``issue``, ``topic``, ``group_a``, ``group_b``, ``jsd``,
  ``alignment``, ``n_posts_a``, ``n_posts_b``, the plug-in interval, then
  :data:`BASELINE_INFERENCE_COLUMNS`;
* liberal tendency, steerability, below-baseline shares, the model-level summary and the
  counting sensitivity table (see :mod:`affalign.align.comparisons`);
* dropped: generations left out, by ``model``, ``reason`` and ``rows``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

import affalign.align.scoring as cells
from affalign.align.comparisons import (
    SCORE_INFERENCE_COLUMNS,
    BootstrapSettings,
    Counting,
    bootstrap_comparisons,
)
from affalign.align.distributions import label_distributions
from affalign.align.divergence import plutchik_smoothing_matrix
from affalign.classify import label_column
from affalign.io import join_affect, labels_of, print_job_warning, write_csv, write_table

MODEL_KEYS = list(cells.MODEL_KEYS)
HUMAN_KEYS = list(cells.HUMAN_KEYS)
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
# After the published columns, so that readers of the published table keep working.
ALIGNMENT_INFERENCE_COLUMNS = [
    "unlabelled_model",
    "unlabelled_human",
    *SCORE_INFERENCE_COLUMNS,
    "baseline_gap",
    "p_below_baseline",
    "below_baseline",
]
BASELINE_INFERENCE_COLUMNS = ["unlabelled_a", "unlabelled_b", *SCORE_INFERENCE_COLUMNS]
BASELINE_COLUMNS = [
    "issue",
    "topic",
    "group_a",
    "group_b",
    "jsd",
    "alignment",
    "n_posts_a",
    "n_posts_b",
    *BASELINE_INFERENCE_COLUMNS,
]
FLAGS = {"is_empty": "empty text", "is_refusal": "refusal", "is_degenerate": "degenerate"}
# Cells named in a warning about cells without a usable post; the rest are counted.
LISTED_CELLS = 5


@dataclass(frozen=True)
class DropPolicy:
    empty: bool = True
    refusals: bool = True
    degenerate: bool = False

    def flags(self) -> list[str]:
        chosen = {"is_empty": self.empty, "is_refusal": self.refusals, "is_degenerate": self.degenerate}
        return [flag for flag, on in chosen.items() if on]


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
) -> pl.DataFrame:
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
    return distributions.with_columns(pl.col("label").cast(pl.String))


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
            "permutations": self.bootstrap.permutations,
            "alpha": self.bootstrap.alpha,
            "plutchik_smoothing": self.plutchik_weight,
            "smoothing": "neighbour smoothing on Plutchik's wheel (not the paper's PEA); raises alignment"
            if self.plutchik_weight is not None
            else None,
            "score": "1 - Jensen-Shannon distance, log base 2",
            "corrected_score": "1 - signed root of (plug-in JS divergence - delta-method bias), log base 2",
            "interval": "percentile interval of the corrected score's bootstrap replicates centred on it "
            "(1 - signed root of the corrected divergence plus each replicate's deviation from the plug-in)",
            "model_level_interval": "two-stage bootstrap: topics, then posts",
            "tests": "permutation (cells), sign-flip over topics (tendency, steerability), "
            "one-sided bootstrap (below baseline); Holm and BH per family",
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AlignSettings:
        """The settings of the align job's recorded params (:func:`align_params`)."""
        return cls(
            groups=tuple(params["groups"]),
            none_bin=params["none_bin"],
            policy=DropPolicy(
                empty=params["drop_empty"],
                refusals=params["drop_refusals"],
                degenerate=params["drop_degenerate"],
            ),
            bootstrap=BootstrapSettings(
                replicates=params["bootstrap_replicates"],
                confidence=params["confidence"],
                seed=params["seed"],
                permutations=params["permutations"],
                alpha=params["alpha"],
            ),
            plutchik_weight=params["plutchik_weight"] if params["plutchik_smoothing"] else None,
        )


# align.* settings in the order the align job's params record them.
RECORDED_ALIGN_KEYS = ("none_bin", "drop_empty", "drop_refusals", "drop_degenerate")
RECORDED_ALIGN_KEYS += ("bootstrap_replicates", "confidence", "permutations", "alpha")


def align_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """What the align job records of a validated config (a change reruns it). The key order
    is part of the record: a reordered dict would rerun every finished study's align job."""
    align = config["align"]
    return {
        "groups": list(config["groups"]),
        **{key: align[key] for key in RECORDED_ALIGN_KEYS},
        "seed": config["seed"],
        "plutchik_smoothing": align["plutchik_smoothing"],
        "plutchik_weight": align["plutchik_weight"],
    }


def compare(
    model_posts: pl.DataFrame, human_posts: pl.DataFrame, labels: Sequence[str], settings: AlignSettings
) -> dict[str, pl.DataFrame]:
    """Distributions, scores with their intervals (one computation) and the comparisons."""
    distributions = distributions_of(model_posts, human_posts, labels, settings.none_bin)
    smoothing = (
        plutchik_smoothing_matrix(labels, settings.plutchik_weight)
        if settings.plutchik_weight is not None
        else None
    )
    scored = bootstrap_comparisons(
        model_posts,
        human_posts,
        labels,
        settings.groups,
        settings.bootstrap,
        smoothing,
        counting=Counting(none_bin=settings.none_bin),
        sensitivity=True,
    )
    alignment = scored["alignment"].select([*ALIGNMENT_COLUMNS, *ALIGNMENT_INFERENCE_COLUMNS])
    return {
        "distributions": distributions,
        "alignment": alignment.sort(["model", "prompt_type", "issue", "topic", "group"]),
        "baseline": scored["baseline"].select(BASELINE_COLUMNS).sort(["issue", "topic"]),
        "tendency": scored["tendency"],
        "steerability": scored["steerability"],
        "below_baseline": scored["below_baseline"],
        "model_summary": scored["model_summary"],
        "sensitivity": scored["sensitivity"],
    }


def inference_warnings(results: dict[str, pl.DataFrame], alpha: float) -> list[str]:
    """Lines for the log: tests whose number of topics cannot reach ``alpha``, and smoothing."""
    lines = []
    for table, name in (("tendency", "liberal tendency"), ("steerability", "steerability")):
        frame = results[table]
        for column, what in (
            ("min_attainable_p", name),
            ("differential_min_attainable_p", "differential steerability"),
        ):
            if column not in frame.columns:
                continue
            short = frame.filter(pl.col(column).is_not_nan() & (pl.col(column) >= alpha))
            for issue, smallest in (
                short.group_by("issue").agg(pl.col(column).min()).sort("issue").iter_rows()
            ):
                lines.append(
                    f"WARNING: {what} on {issue}: with these topics the smallest attainable p-value is "
                    f"{smallest:.3g} >= alpha {alpha}: no test can be significant (see min_attainable_p)"
                )
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def unusable_warnings(
    generated: pl.DataFrame,
    kept: pl.DataFrame,
    dropped: pl.DataFrame,
    labels: Sequence[str],
    settings: AlignSettings,
    classifier: str,
) -> list[str]:
    """Warnings naming each model, and each model cell (prompt type × issue × topic), that
    has no usable post, with its counts: generated, left out by the drop policy (per
    reason) and kept without any label (which add nothing unless ``none_bin``). Such a cell
    has no score (empty cells in the tables) and is not counted in ``n_topics``."""
    usable = pl.lit(True) if settings.none_bin else pl.any_horizontal([label_column(x) for x in labels])
    cells = (
        generated.group_by(MODEL_KEYS)
        .agg(pl.len().alias("generated"))
        .join(
            kept.group_by(MODEL_KEYS).agg(pl.len().alias("kept"), usable.sum().alias("usable")),
            on=MODEL_KEYS,
            how="left",
        )
        .with_columns(pl.col("kept", "usable").fill_null(0).cast(pl.Int64))
        .sort(MODEL_KEYS)
    )
    lines = []
    for (model,), frame in cells.group_by(["model"], maintain_order=True):
        empty = frame.filter(pl.col("usable") == 0)
        if empty.is_empty():
            continue
        totals = frame.select(pl.col("generated", "kept", "usable").sum()).row(0, named=True)
        if totals["usable"] == 0:
            reasons = dropped.filter(pl.col("model") == model).select("reason", "rows").rows()
            counts = [f"{rows} left out as {reason} (dropped.csv)" for reason, rows in reasons]
            where = (
                "its scores are empty cells in the align tables"
                if totals["kept"]
                else "it is absent from the align tables"
            )
            lines.append(
                f"{classifier}: model {model!r} has no usable post, so no score: of its "
                f"{_plural(totals['generated'], 'post')}, {_counts(counts, totals['kept'])}; {where}"
            )
            continue
        listed = [
            f"{prompt_type}/{issue}/{topic} ({_plural(generated, 'post')}: "
            f"{_counts([f'{generated - n_kept} left out'] if generated > n_kept else [], n_kept)})"
            for prompt_type, issue, topic, generated, n_kept in empty.select(
                "prompt_type", "issue", "topic", "generated", "kept"
            )
            .head(LISTED_CELLS)
            .rows()
        ]
        more = empty.height - LISTED_CELLS
        lines.append(
            f"{classifier}: model {model!r}: {empty.height} of {frame.height} cells (prompt type/issue/"
            f"topic) have no usable post, so no score: {', '.join(listed)}"
            + (f" and {more} more" if more > 0 else "")
        )
    return lines


def _counts(left_out: list[str], unlabelled: int) -> str:
    """What became of a cell's or a model's posts: left out (per reason, see dropped.csv),
    kept without a label (``align.none_bin`` would count them)."""
    parts = [*left_out, *([f"{unlabelled} kept without a label (align.none_bin)"] if unlabelled else [])]
    return ", ".join(parts)


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
    for name in ("distributions", "alignment", "baseline", "tendency", "steerability", "model_summary"):
        write_table(results[name], outputs[name], provenance)
    write_csv(results["alignment"], outputs["alignment_csv"])
    write_csv(results["baseline"], outputs["baseline_csv"])
    write_csv(results["tendency"], outputs["tendency_csv"])
    write_csv(results["steerability"], outputs["steerability_csv"])
    write_csv(results["below_baseline"], outputs["below_baseline"])
    write_csv(results["model_summary"], outputs["model_summary_csv"])
    write_csv(results["sensitivity"], outputs["sensitivity"])
    write_csv(alignment_matrix(results["alignment"], results["baseline"]), outputs["matrix"])
    write_csv(dropped, outputs["dropped"])
    print(
        f"[affalign] {classifier}: {kept.height}/{model_posts.height} generations kept; dropped:\n{dropped}"
    )
    if settings.plutchik_weight is not None:
        print(
            "[affalign] WARNING: Plutchik neighbour smoothing is on (not the paper's PEA): smoothing both "
            "sides can only raise alignment, by construction"
        )
    for line in inference_warnings(results, settings.bootstrap.alpha):
        print(f"[affalign] {line}")
    for line in unusable_warnings(model_posts, kept, dropped, labels, settings, classifier):
        print_job_warning(line)
