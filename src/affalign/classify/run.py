"""Classify posts into affect labels, one affect file per input shard.

The classifier is loaded once per job and applied to every shard the job is given. Human
and generated posts go through the same text normalisation. An affect file has one row
per input post, in the input's order: ``post_id``, ``p_<label>`` (the classifier's score)
and ``y_<label>`` (whether the post carries the label); its provenance names the
classifier, its version and its labels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from affalign.classify import lexicon
from affalign.classify.labels import label_column, score_column
from affalign.classify.text import normalise_text
from affalign.io import read_provenance, write_table


@dataclass
class LoadedClassifier:
    """A classifier ready to score texts into ``p_<label>``/``y_<label>`` columns."""

    labels: tuple[str, ...]
    version: str
    source: str
    threshold: str
    score: Callable[[Sequence[str | None]], pl.DataFrame]
    details: dict[str, Any]


def _lexicon_classifier(spec: Mapping[str, Any]) -> LoadedClassifier:
    model = lexicon.load(spec["lexicon"])
    return LoadedClassifier(
        labels=model.labels,
        version=model.version,
        source=model.source,
        threshold="score >= 1 (at least one lexicon match)",
        score=lambda texts: lexicon.classify_texts(model, (normalise_text(t) for t in texts)),
        details={"text_normalisation": "URLs and @mentions removed, '#' dropped from hashtags"},
    )


def _hf_classifier(name: str, spec: Mapping[str, Any]) -> LoadedClassifier:
    from affalign.classify.transformer import load_hf

    model = load_hf(name, spec)

    def score(texts: Sequence[str | None]) -> pl.DataFrame:
        probabilities = model.predict(list(texts))
        columns: dict[str, pl.Series] = {}
        for position, label in enumerate(model.labels):
            values = probabilities[:, position]
            columns[score_column(label)] = pl.Series(values, dtype=pl.Float64)
            columns[label_column(label)] = pl.Series(values >= model.threshold, dtype=pl.Boolean)
        return pl.DataFrame(columns)

    return LoadedClassifier(
        labels=model.labels,
        version=model.version,
        source=model.source,
        threshold=f"probability >= {model.threshold}",
        score=score,
        details={
            **model.details,
            "device": model.device,
            "text_normalisation": "URLs -> 'http', @mentions -> '@user'",
        },
    )


def load_classifier(name: str, spec: Mapping[str, Any]) -> LoadedClassifier:
    if spec["type"] == "lexicon":
        return _lexicon_classifier(spec)
    if spec["type"] in ("hf", "hf-binary-set"):
        return _hf_classifier(name, spec)
    raise ValueError(f"classifier {name!r}: unsupported type {spec['type']!r}")


def classify_files(
    classifier: str,
    spec: Mapping[str, Any],
    inputs: Sequence[str | Path],
    outputs: Sequence[str | Path],
) -> None:
    """Classify the ``text`` column of each input shard into the matching output path."""
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    began = time.time()
    model = load_classifier(classifier, spec)
    print(f"[affalign] loaded {classifier} ({model.version}) in {time.time() - began:.1f} s", flush=True)
    total = 0
    for source, target in zip(inputs, outputs, strict=True):
        posts = pl.read_parquet(source, columns=["post_id", "text"])
        scores = model.score(posts["text"].to_list())
        affect = pl.concat([posts.select("post_id"), scores], how="horizontal")
        provenance = {
            "stage": "classify",
            "classifier": classifier,
            "classifier_spec": dict(spec),
            "classifier_version": model.version,
            "classifier_source": model.source,
            "labels": list(model.labels),
            "threshold": model.threshold,
            **model.details,
            "input": str(source),
            "input_provenance": read_provenance(source),
        }
        write_table(affect, target, provenance)
        total += posts.height
    print(
        f"[affalign] {classifier}: {total} posts in {len(inputs)} files, {time.time() - began:.1f} s",
        flush=True,
    )
