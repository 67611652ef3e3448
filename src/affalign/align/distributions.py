"""Label distributions per source and topic, and vectorised Jensen–Shannon alignment.

All functions are pure: they take and return polars frames and do no I/O.

Conventions
-----------
* An *affect table* has one row per post, key columns (e.g. ``model``, ``prompt_type``,
  ``issue``, ``topic`` or ``group``) and one boolean column ``y_<label>`` per label.
* A *distribution* is tidy: key columns, ``label``, ``count`` (posts carrying the label),
  ``n_posts`` (posts in the cell), ``total`` (sum of counts in the cell) and
  ``p = count / total``. A post with several labels counts once for each. Posts without
  any label add nothing, unless ``none_bin`` is set, in which case they are counted in an
  extra label ``"none"``. A cell whose counts sum to zero has ``p`` null: it has no
  distribution and every score against it is null.
* Alignment is ``1 − JSD`` with the base-2 Jensen–Shannon distance, in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from affalign.classify import NONE_LABEL, label_column


def label_distributions(
    affect: pl.DataFrame | pl.LazyFrame,
    keys: Sequence[str],
    labels: Sequence[str],
    none_bin: bool = False,
) -> pl.DataFrame:
    """Count posts per label within each cell of ``keys`` and normalise to a distribution."""
    frame = affect.lazy()
    flags = [pl.col(label_column(label)).cast(pl.Int64) for label in labels]
    aggregations = [pl.col(label_column(label)).cast(pl.Int64).sum().alias(label) for label in labels]
    aggregations.append(pl.len().cast(pl.Int64).alias("n_posts"))
    label_names = list(labels)
    if none_bin:
        aggregations.append((pl.sum_horizontal(flags) == 0).cast(pl.Int64).sum().alias(NONE_LABEL))
        label_names.append(NONE_LABEL)
    wide = frame.group_by(list(keys)).agg(aggregations)
    long = wide.unpivot(index=[*keys, "n_posts"], on=label_names, variable_name="label", value_name="count")
    order = pl.Enum(label_names)
    return (
        long.with_columns(
            pl.col("label").cast(order),
            pl.col("count").sum().over(list(keys)).alias("total"),
        )
        .with_columns(
            pl.when(pl.col("total") > 0).then(pl.col("count") / pl.col("total")).otherwise(None).alias("p")
        )
        .select([*keys, "label", "count", "n_posts", "total", "p"])
        .sort([*keys, "label"])
        .collect()
    )


def _plogp_ratio(p: pl.Expr, m: pl.Expr) -> pl.Expr:
    return pl.when(p > 0).then(p * (p / m).log(base=2)).otherwise(0.0)


def jensen_shannon_alignment(
    left: pl.DataFrame | pl.LazyFrame,
    right: pl.DataFrame | pl.LazyFrame,
    on: Sequence[str],
    left_keys: Sequence[str],
    right_keys: Sequence[str],
) -> pl.DataFrame:
    """Score every left cell against every right cell that shares the ``on`` keys.

    ``left`` and ``right`` are distributions from :func:`label_distributions` over the same
    label set. Returns one row per pair with ``on``, ``left_keys``, ``right_keys``,
    ``jsd`` (base-2 Jensen–Shannon distance), ``alignment = 1 − jsd``, and the post counts
    ``n_left`` and ``n_right``. Pairs where either side has no distribution get nulls.
    """
    on, left_keys, right_keys = list(on), list(left_keys), list(right_keys)
    overlap = set(left_keys) & set(right_keys)
    if overlap:
        raise ValueError(f"left and right key columns must differ, both have {sorted(overlap)}")
    lhs = left.lazy().select(
        [*on, *left_keys, "label", pl.col("p").alias("p_left"), pl.col("n_posts").alias("n_left")]
    )
    rhs = right.lazy().select(
        [*on, *right_keys, "label", pl.col("p").alias("p_right"), pl.col("n_posts").alias("n_right")]
    )
    pairs = lhs.join(rhs, on=[*on, "label"], how="inner")
    mixture = (pl.col("p_left") + pl.col("p_right")) / 2
    cell = [*on, *left_keys, *right_keys]
    scored = (
        pairs.with_columns(
            (
                0.5 * _plogp_ratio(pl.col("p_left"), mixture) + 0.5 * _plogp_ratio(pl.col("p_right"), mixture)
            ).alias("term")
        )
        .group_by(cell)
        .agg(
            pl.col("term").sum().alias("divergence"),
            (pl.col("p_left").is_null() | pl.col("p_right").is_null()).any().alias("undefined"),
            pl.col("n_left").first(),
            pl.col("n_right").first(),
        )
        .with_columns(
            pl.when(pl.col("undefined"))
            .then(None)
            .otherwise(pl.col("divergence").clip(0.0, 1.0).sqrt())
            .alias("jsd")
        )
        .with_columns((1.0 - pl.col("jsd")).alias("alignment"))
        .select([*cell, "jsd", "alignment", "n_left", "n_right"])
        .sort(cell)
    )
    return scored.collect()
