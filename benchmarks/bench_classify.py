"""Classifier throughput: affalign's batched path against transformers' default pipeline.

Classifies the same tweet-length texts with the same randomly initialised BERT-base-sized
multi-label model through (a) affalign (length-sorted batches under a token budget,
inference mode, half precision on CUDA) and (b) ``transformers.pipeline("text-
classification", ...)`` with its default settings, in the same run; prints texts/s for
both and the ratio (a)/(b).

Usage: ``python benchmarks/bench_classify.py [--texts 2000] [--device auto|cpu|cuda]``
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

from affalign.hf_classifier import load_hf, normalise_tweet  # noqa: E402

LABELS = [
    "anger", "anticipation", "disgust", "fear", "joy", "love",
    "optimism", "pessimism", "sadness", "surprise", "trust",
]  # fmt: skip


def tweet_like_texts(count: int, seed: int = 0) -> list[str]:
    """Tweet-length texts recombined from the demo posts (10-60 words)."""
    words: list[str] = []
    for path in sorted((REPO / "resources" / "demo" / "human").glob("*.csv")):
        with open(path, newline="") as stream:
            for row in csv.DictReader(stream):
                words += row["text"].split()
    rng = random.Random(seed)
    return [" ".join(rng.choices(words, k=rng.randint(10, 60))) for _ in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-tokens", type=int, default=None, help="default: 16384 on CUDA, 1024 on CPU")
    args = parser.parse_args()
    import torch
    from tiny_models import build_tiny_bert_classifier
    from transformers import pipeline

    texts = tweet_like_texts(args.texts)
    with tempfile.TemporaryDirectory(prefix="affalign-bench-") as scratch:
        folder = build_tiny_bert_classifier(
            Path(scratch) / "bert-base-random", LABELS, corpus=texts, vocab_size=8000,
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            max_position_embeddings=512,
        )  # fmt: skip
        spec = {
            "type": "hf", "model": str(folder), "labels": LABELS, "max_length": 128,
            "batch_tokens": args.batch_tokens, "device": args.device,
        }  # fmt: skip
        classifier = load_hf("bench", spec)
        classifier.predict(texts[:32])  # warm-up
        began = time.perf_counter()
        ours = classifier.predict(texts)
        ours_s = time.perf_counter() - began
        quantised_s = None
        if classifier.device == "cpu":
            quantised = load_hf("bench", {**spec, "dtype": "qint8"})
            quantised.predict(texts[:32])
            began = time.perf_counter()
            difference = np.abs(quantised.predict(texts) - ours).max()
            quantised_s = time.perf_counter() - began

        device = classifier.device
        baseline = pipeline(
            "text-classification", model=str(folder), tokenizer=str(folder), device=device, top_k=None
        )
        prepared = [normalise_tweet(text) for text in texts]
        baseline(prepared[:32], truncation=True, max_length=128)  # warm-up
        began = time.perf_counter()
        theirs = baseline(prepared, truncation=True, max_length=128)
        theirs_s = time.perf_counter() - began
    assert ours.shape == (len(texts), len(LABELS)) and len(theirs) == len(texts)
    ours_rate, theirs_rate = len(texts) / ours_s, len(texts) / theirs_s
    print(f"model: random BERT-base (12 x 768), {len(LABELS)} labels; device {device}, {classifier.dtype}")
    threads = torch.get_num_threads()
    print(f"texts: {len(texts)} tweet-length (10-60 words), max_length 128, torch threads {threads}")
    print(f"(a) affalign batched:          {ours_rate:8.1f} texts/s ({ours_s:.1f} s)")
    print(f"(b) transformers.pipeline:     {theirs_rate:8.1f} texts/s ({theirs_s:.1f} s)")
    print(f"ratio (a)/(b): {ours_rate / theirs_rate:.2f}")
    if quantised_s is not None:
        rate = len(texts) / quantised_s
        print(f"(a') affalign batched, dtype qint8: {rate:8.1f} texts/s ({quantised_s:.1f} s), "
              f"max |p - p_float32| = {difference:.3f}")  # fmt: skip
        print(f"ratio (a')/(b): {rate / theirs_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
