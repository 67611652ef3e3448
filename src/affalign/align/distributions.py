"""Label distributions per source and topic.

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
