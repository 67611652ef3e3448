"""Labels a reader can judge (``results/align/label_samples.csv``): a seeded sample of posts,
human and generated, with the labels each classifier gave them, side by side.

``per_cell`` posts per issue × group (human) and per model × issue × prompt type
(generated), drawn with the study's seed from the posts sorted by id. One column per
classifier holds the labels it gave (``;``-joined), ``none`` when it gave none, and
``(unparsed)`` when the post is missing from its affect file (an LLM judge's unreadable
answer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

SAMPLE_KEYS = ["source", "issue", "group", "prompt_type", "topic", "post_id", "text"]


def _sample(posts: pl.DataFrame, by: list[str], per_cell: int, seed: int) -> pl.DataFrame:
    parts = []
    for _, cell in sorted(posts.sort("post_id").group_by(by, maintain_order=True), key=lambda kv: kv[0]):
        parts.append(cell.sample(n=min(per_cell, cell.height), seed=seed).sort("post_id"))
    return pl.concat(parts) if parts else posts.head(0)


def _labels_given(affect: pl.DataFrame) -> pl.DataFrame:
    flags = [c for c in affect.columns if c.startswith("y_")]
    given = pl.concat_list(
        [pl.when(pl.col(c).fill_null(False)).then(pl.lit(c[2:])).otherwise(pl.lit(None)) for c in flags]
    ).list.drop_nulls()
    return affect.select(
        "post_id",
        pl.when(given.list.len() > 0).then(given.list.join(";")).otherwise(pl.lit("none")).alias("labels"),
    )


def label_samples(
    human: Sequence[str | Path],
    generated: Sequence[str | Path],
    affect: Mapping[str, Sequence[str | Path]],
    per_cell: int,
    seed: int,
) -> pl.DataFrame:
    """The sample (see the module's docstring); ``affect``: classifier -> its affect files."""
    human_posts = pl.concat(
        [pl.read_parquet(p, columns=["post_id", "issue", "topic", "group", "text"]) for p in human]
    )
    people = _sample(human_posts, ["issue", "group"], per_cell, seed).with_columns(
        pl.lit("human").alias("source"), pl.lit(None, dtype=pl.String).alias("prompt_type")
    )
    columns = ["post_id", "model", "issue", "topic", "prompt_type", "text"]
    model_posts = pl.concat([pl.read_parquet(p, columns=columns) for p in generated]) if generated else None
    frames = [people.select(SAMPLE_KEYS)]
    if model_posts is not None and model_posts.height:
        machines = _sample(model_posts, ["model", "issue", "prompt_type"], per_cell, seed).with_columns(
            pl.col("model").alias("source"), pl.lit(None, dtype=pl.String).alias("group")
        )
        frames.append(machines.select(SAMPLE_KEYS))
    sample = pl.concat(frames)
    for classifier, paths in affect.items():
        given = pl.concat([_labels_given(pl.read_parquet(p)) for p in paths]).unique("post_id")
        sample = sample.join(given.rename({"labels": classifier}), on="post_id", how="left").with_columns(
            pl.col(classifier).fill_null("(unparsed)")
        )
    return sample


def write_label_samples(
    human: Sequence[str],
    generated: Sequence[str],
    affect_files: Sequence[str],
    classifiers: Sequence[str],
    output: str | Path,
    per_cell: int,
    seed: int,
) -> pl.DataFrame:
    """Group ``affect_files`` by the classifier named in their path and write the CSV."""
    from affalign.io import write_csv

    affect = {name: [p for p in affect_files if f"/classify/{name}/" in f"/{p}"] for name in classifiers}
    table = label_samples(human, generated, affect, per_cell, seed)
    write_csv(table, output)
    return table
