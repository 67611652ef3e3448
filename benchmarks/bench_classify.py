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
sys.path.insert(0, str(REPO / "tests" / "support"))

from affalign.classify.transformer import load_hf, normalise_tweet  # noqa: E402

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


def gemm_peak_gflops(device: str, quantised: bool = False) -> float:
    """Measured throughput (GFLOP/s; GOP/s for int8) of a BERT-base feed-forward matmul,
    1,024 tokens x 768 -> 3,072: the ceiling for a model whose time goes into such layers."""
    import torch

    layer = torch.nn.Linear(768, 3072).to(device).eval()
    if quantised:
        layer = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(layer), {torch.nn.Linear})
    if device == "cuda":
        layer = layer.half()
    tokens = torch.randn(1024, 768, device=device, dtype=torch.float16 if device == "cuda" else torch.float32)
    repeats = 200 if device == "cuda" else 20
    with torch.inference_mode():
        for _ in range(3):
            layer(tokens)
        if device == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        for _ in range(repeats):
            layer(tokens)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - began
    return 2 * 1024 * 768 * 3072 * repeats / seconds / 1e9


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
        tokens = sum(len(ids) for ids in classifier_tokens(folder, prepared))
        weights = parameters_outside_embeddings(folder)
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
    # Roofline: the work is ~2 x (weights outside the embeddings) FLOPs per token; compare
    # what each path achieves with a large matmul measured now on the same device.
    work = 2 * weights * tokens / 1e9
    peak = gemm_peak_gflops(device)
    print(f"work: {tokens} tokens x {weights / 1e6:.1f} M weights = {work:.0f} GFLOP")
    print(f"matmul ceiling ({'float16' if device == 'cuda' else 'float32'}): {peak:.0f} GFLOP/s")
    print(f"(a) achieves {work / ours_s:.0f} GFLOP/s ({work / ours_s / peak:.0%} of the ceiling), "
          f"(b) {work / theirs_s:.0f} GFLOP/s ({work / theirs_s / peak:.0%})")  # fmt: skip
    print(f"highest ratio any batched path could reach here: {peak / (work / theirs_s):.2f}")
    if quantised_s is not None:
        peak_int8 = gemm_peak_gflops(device, quantised=True)
        achieved = work / quantised_s
        print(f"int8 matmul ceiling: {peak_int8:.0f} GOP/s; (a') achieves {achieved:.0f} "
              f"({achieved / peak_int8:.0%}); highest int8 ratio: "
              f"{peak_int8 * theirs_s / work:.2f}")  # fmt: skip
    return 0


def classifier_tokens(folder: Path, texts: list[str]) -> list[list[int]]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)(texts, truncation=True, max_length=128)["input_ids"]


def parameters_outside_embeddings(folder: Path) -> int:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


if __name__ == "__main__":
    sys.exit(main())
