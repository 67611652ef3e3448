"""Transformer sequence classifiers (Hugging Face), batched for throughput.

Two kinds, both loaded once per job:

* ``hf``: one multi-label (sigmoid) or single-label (softmax) model whose label map must
  match the configured labels;
* ``hf-binary-set``: one binary model per label (e.g. the five Mformer models); a label's
  probability is the softmax probability of the positive class.

Inference sorts texts by token length and packs them into batches under a token budget
(longest sequence × batch size), runs under ``torch.inference_mode`` in half precision on
CUDA, and returns probabilities in the input order. A post carries a label when its
probability is at least the threshold.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from affalign.classify.text import normalise_tweet


class ClassifierError(RuntimeError):
    """A classifier that cannot be loaded or does not match its configuration."""


def token_budget_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices grouped into batches of similar length whose padded size fits ``budget``.

    Texts are taken shortest first; a batch grows while ``longest × size`` stays within the
    budget (a single text longer than the budget forms its own batch).
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order.tolist():
        length = max(1, int(lengths[index]))
        if current and max(longest, length) * (len(current) + 1) > budget:
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, length)
    if current:
        batches.append(current)
    return batches


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested != "auto":
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(requested: str, device: str):
    """The dtype weights are loaded in; ``qint8`` loads float32 and quantises afterwards."""
    import torch

    names = {
        "float32": torch.float32,
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
        "qint8": torch.float32,
    }
    if requested == "qint8" and device != "cpu":
        raise ClassifierError("dtype qint8 (dynamic int8 quantisation) runs on the CPU only")
    if requested == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    return names[requested]


@dataclass
class HFClassifier:
    """A loaded classifier: a function from texts to an (n_texts × n_labels) probability array."""

    name: str
    labels: tuple[str, ...]
    threshold: float
    version: str
    source: str
    device: str
    dtype: str
    details: dict[str, Any] = field(default_factory=dict)
    _scorers: list[Callable[[Sequence[str]], np.ndarray]] = field(default_factory=list, repr=False)

    def predict(self, texts: Sequence[str | None]) -> np.ndarray:
        prepared = [normalise_tweet(text) for text in texts]
        if not prepared:
            return np.zeros((0, len(self.labels)))
        return np.concatenate([scorer(prepared) for scorer in self._scorers], axis=1)


def _load_model(source: str, revision: str | None, device: str, dtype, quantise: bool = False):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        model = AutoModelForSequenceClassification.from_pretrained(source, revision=revision, dtype=dtype)
    except (OSError, ValueError) as error:
        raise ClassifierError(
            f"cannot load classifier model {source!r} (revision {revision!r}): {error}. Local folders "
            "must exist; hub ids must be in HF_HOME (pre-download them, see docs/cluster.md)"
        ) from error
    model.to(device).eval()
    if quantise:
        import torch

        # Linear layers in int8 with dynamic activation scales: about twice as fast on CPUs,
        # scores within ~1e-2 of float32.
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return tokenizer, model


def _batched_probabilities(
    tokenizer,
    model,
    activation: str,
    positive_index: int | None,
    max_length: int,
    batch_tokens: int,
    device: str,
    progress_label: str,
) -> Callable[[Sequence[str]], np.ndarray]:
    import torch

    def score(texts: Sequence[str]) -> np.ndarray:
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
        lengths = [len(ids) for ids in encoded]
        batches = token_budget_batches(lengths, batch_tokens)
        width = 1 if positive_index is not None else model.config.num_labels
        result = np.zeros((len(texts), width), dtype=np.float64)
        began, done, step = time.time(), 0, max(1, len(batches) // 10)
        with torch.inference_mode():
            for number, batch in enumerate(batches, start=1):
                padded = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
                logits = model(**{k: v.to(device) for k, v in padded.items()}).logits.float()
                if positive_index is not None:
                    probabilities = torch.softmax(logits, dim=-1)[:, positive_index : positive_index + 1]
                elif activation == "sigmoid":
                    probabilities = torch.sigmoid(logits)
                else:
                    probabilities = torch.softmax(logits, dim=-1)
                result[batch] = probabilities.cpu().numpy()
                done += len(batch)
                if number % step == 0 or number == len(batches):
                    rate = done / max(time.time() - began, 1e-9)
                    print(
                        f"[affalign] {progress_label}: {done}/{len(texts)} texts ({rate:.0f}/s)",
                        file=sys.stderr,
                    )
        return result

    return score


def _check_labels(name: str, source: str, model, expected: Sequence[str]) -> None:
    actual = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    if [a.lower() for a in actual] != [e.lower() for e in expected]:
        raise ClassifierError(
            f"classifier {name!r}: the configured labels {list(expected)} do not match the label map "
            f"of {source!r}, which is {actual} (in order); fix classifiers.{name}.labels"
        )


def load_hf(name: str, spec: Mapping[str, Any]) -> HFClassifier:
    """Load an ``hf`` or ``hf-binary-set`` classifier described by its config entry."""
    from importlib import metadata

    device = pick_device(spec.get("device", "auto"))
    dtype = pick_dtype(spec.get("dtype", "auto"), device)
    quantise = spec.get("dtype") == "qint8"
    common = {
        "max_length": int(spec.get("max_length", 128)),
        # Large batches feed a GPU; on a CPU, smaller ones stay in cache (measured: 1024
        # tokens 1.5x faster than 16384 for BERT-base on two cores).
        "batch_tokens": int(spec.get("batch_tokens") or (16384 if device == "cuda" else 1024)),
        "device": device,
    }
    classifier = HFClassifier(
        name=name,
        labels=(),
        threshold=float(spec.get("threshold", 0.5)),
        version=f"transformers=={metadata.version('transformers')}",
        source="",
        device=device,
        dtype="qint8" if quantise else str(dtype).removeprefix("torch."),
    )
    if spec["type"] == "hf":
        source = spec["model"]
        tokenizer, model = _load_model(source, spec.get("revision"), device, dtype, quantise)
        _check_labels(name, source, model, spec["labels"])
        classifier.labels = tuple(spec["labels"])
        classifier.source = source
        classifier._scorers.append(
            _batched_probabilities(
                tokenizer, model, spec.get("activation", "sigmoid"), None, progress_label=name, **common
            )
        )
    elif spec["type"] == "hf-binary-set":
        sources = dict(spec["models"])
        classifier.labels = tuple(sources)
        classifier.source = ", ".join(f"{label}={source}" for label, source in sources.items())
        # Each member at its own (locked) commit; revision is the fallback.
        revisions = {label: spec.get("revisions", {}).get(label, spec.get("revision")) for label in sources}
        for label, source in sources.items():
            tokenizer, model = _load_model(source, revisions[label], device, dtype, quantise)
            if model.config.num_labels != 2:
                raise ClassifierError(
                    f"classifier {name!r}: {source!r} for label {label!r} has {model.config.num_labels} "
                    "outputs, a binary model needs 2"
                )
            classifier._scorers.append(
                _batched_probabilities(
                    tokenizer,
                    model,
                    "softmax",
                    int(spec.get("positive_index", 1)),
                    progress_label=f"{name}/{label}",
                    **common,
                )
            )
    else:
        raise ClassifierError(f"classifier {name!r}: unknown type {spec['type']!r}")
    classifier.details = {"revision": spec.get("revision"), **common, "dtype": classifier.dtype}
    if spec.get("revisions"):
        classifier.details["revisions"] = dict(spec["revisions"])
    return classifier
