"""Transformer classifiers on tiny random BERT models built here (no download)."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from tiny_models import build_tiny_bert_classifier

from affalign.classify.run import classify_files
from affalign.classify.transformer import ClassifierError, load_hf, normalise_tweet, token_budget_batches
from affalign.io.parquet import read_provenance, write_table

LABELS = ["anger", "fear", "joy"]
TEXTS = [
    "masks protect people",
    "",
    "we are angry sad afraid hopeful and joyful and the ruling is a victory for freedom and faith " * 3,
    "trust the science",
    "\ufffd\ufffd broken",
    "protect the children from harm and keep them safe",
]


@pytest.fixture(scope="module")
def emotion_model(tmp_path_factory) -> Path:
    return build_tiny_bert_classifier(tmp_path_factory.mktemp("clf") / "emotions", LABELS)


@pytest.fixture(scope="module")
def binary_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("binary")
    return {
        label: str(build_tiny_bert_classifier(root / label, ["no", "yes"], "single_label_classification"))
        for label in ["care", "fairness"]
    }


def spec(model: Path, **changes):
    return {
        "type": "hf",
        "model": str(model),
        "labels": LABELS,
        "threshold": 0.5,
        "batch_tokens": 64,
        **changes,
    }


def test_probabilities_thresholds_and_input_order(emotion_model):
    classifier = load_hf("emo", spec(emotion_model))
    batched = classifier.predict(TEXTS)
    assert batched.shape == (len(TEXTS), 3)
    assert ((batched >= 0) & (batched <= 1)).all()
    # One text at a time gives the same numbers: batching and sorting keep the input order.
    one_by_one = np.concatenate([classifier.predict([text]) for text in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_labels_follow_the_threshold_in_affect_files(emotion_model, tmp_path):
    posts = pl.DataFrame({"post_id": [f"p{i}" for i in range(len(TEXTS))], "text": TEXTS})
    write_table(posts, tmp_path / "posts.parquet", {"stage": "test"})
    classify_files(
        "emo", spec(emotion_model, threshold=0.5), [tmp_path / "posts.parquet"], [tmp_path / "a.parquet"]
    )
    affect = pl.read_parquet(tmp_path / "a.parquet")
    assert affect["post_id"].to_list() == posts["post_id"].to_list()
    for label in LABELS:
        assert (affect[f"y_{label}"] == (affect[f"p_{label}"] >= 0.5)).all()
    provenance = read_provenance(tmp_path / "a.parquet")
    assert provenance["labels"] == LABELS and provenance["threshold"] == "probability >= 0.5"
    assert provenance["classifier_version"].startswith("transformers==")


def test_empty_shard_gives_an_empty_affect_file(emotion_model, tmp_path):
    empty = pl.DataFrame(schema={"post_id": pl.String, "text": pl.String})
    write_table(empty, tmp_path / "empty.parquet", {})
    classify_files("emo", spec(emotion_model), [tmp_path / "empty.parquet"], [tmp_path / "a.parquet"])
    affect = pl.read_parquet(tmp_path / "a.parquet")
    assert affect.height == 0
    assert affect.columns == ["post_id", *[c for label in LABELS for c in (f"p_{label}", f"y_{label}")]]


def test_label_mismatch_fails_clearly(emotion_model):
    with pytest.raises(
        ClassifierError, match=r"labels \['anger', 'joy', 'fear'\] do not match.*\['anger', 'fear', 'joy'\]"
    ):
        load_hf("emo", spec(emotion_model, labels=["anger", "joy", "fear"]))


def test_missing_model_fails_clearly(tmp_path):
    with pytest.raises(ClassifierError, match="cannot load classifier model"):
        load_hf("emo", spec(tmp_path / "nothing-here"))


def test_binary_set_scores_the_positive_class(binary_models):
    classifier = load_hf("mf", {"type": "hf-binary-set", "models": binary_models, "batch_tokens": 64})
    scores = classifier.predict(TEXTS)
    assert classifier.labels == ("care", "fairness")
    assert scores.shape == (len(TEXTS), 2) and ((scores > 0) & (scores < 1)).all()


def test_token_budget_batches_sort_by_length_and_respect_the_budget():
    lengths = [5, 30, 2, 8, 100, 7]
    batches = token_budget_batches(lengths, budget=32)
    assert sorted(i for batch in batches for i in batch) == list(range(6))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 32
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(flat)


def test_tweet_normalisation():
    assert normalise_tweet("Hi @bob see https://t.co/x #Masks") == "Hi @user see http #Masks"


def test_int8_quantisation_on_the_cpu_stays_close_to_float32(emotion_model):
    exact = load_hf("emo", spec(emotion_model)).predict(TEXTS)
    quantised = load_hf("emo", spec(emotion_model, dtype="qint8"))
    assert quantised.dtype == "qint8"
    np.testing.assert_allclose(quantised.predict(TEXTS), exact, atol=0.05)
