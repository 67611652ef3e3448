"""Classify posts into affect labels, one affect file per input shard.

The classifier is loaded once per job and applied to every shard the job is given. Human
and generated posts go through the same text normalisation. An affect file has one row
per input post, in the input's order: ``post_id``, ``p_<label>`` (the classifier's score)
and ``y_<label>`` (whether the post carries the label); its provenance names the
classifier, its version and its labels.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from affalign import lexicon
from affalign.shards import read_provenance, write_shard

URL_PATTERN = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
MENTION_PATTERN = re.compile(r"(?<!\w)@\w+")


def normalise_text(text: str | None) -> str:
    """Drop URLs and @mentions and keep hashtag words (``#MaskUp`` → ``MaskUp``)."""
    if not text:
        return ""
    text = URL_PATTERN.sub(" ", text)
    text = MENTION_PATTERN.sub(" ", text)
    return " ".join(text.replace("#", " ").split())


def load_classifier(spec: Mapping[str, Any]) -> lexicon.Lexicon:
    if spec["type"] != "lexicon":
        raise ValueError(f"unsupported classifier type {spec['type']!r}")
    return lexicon.load(spec["lexicon"])


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
    model = load_classifier(spec)
    print(f"[affalign] loaded {classifier} ({model.version}) in {time.time() - began:.1f} s", flush=True)
    total = 0
    for source, target in zip(inputs, outputs, strict=True):
        posts = pl.read_parquet(source, columns=["post_id", "text"])
        scores = lexicon.classify_texts(model, (normalise_text(t) for t in posts["text"]))
        affect = pl.concat([posts.select("post_id"), scores], how="horizontal")
        provenance = {
            "stage": "classify",
            "classifier": classifier,
            "classifier_spec": dict(spec),
            "classifier_version": model.version,
            "classifier_source": model.source,
            "labels": list(model.labels),
            "threshold": "score >= 1 (at least one lexicon match)",
            "text_normalisation": "URLs and @mentions removed, '#' dropped from hashtags",
            "input": str(source),
            "input_provenance": read_provenance(source),
        }
        write_shard(affect, target, provenance)
        total += posts.height
    print(
        f"[affalign] {classifier}: {total} posts in {len(inputs)} files, {time.time() - began:.1f} s",
        flush=True,
    )
