import math

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon

from affalign.align.distributions import jensen_shannon_alignment, label_distributions
from affalign.align.divergence import alignment, jensen_shannon_distance, normalise


def test_identical_distributions_align_perfectly():
    assert alignment([3, 1, 0, 6], [0.3, 0.1, 0.0, 0.6]) == pytest.approx(1.0)


def test_disjoint_distributions_do_not_align():
    assert alignment([1, 2, 0, 0], [0, 0, 5, 1]) == pytest.approx(0.0)
    assert jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_hand_computed_pair():
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4):
    # KL(p||m) = log2(4/3); KL(q||m) = 1/2 log2(2/3) + 1/2 log2(2)
    divergence = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5)
    assert jensen_shannon_distance([1, 0], [1, 1]) == pytest.approx(math.sqrt(divergence), abs=1e-12)
    assert alignment([1, 0], [1, 1]) == pytest.approx(1 - 0.5579230, abs=1e-6)


def test_matches_scipy_on_random_counts():
    rng = np.random.default_rng(7)
    for _ in range(200):
        size = rng.integers(2, 12)
        p = rng.integers(0, 20, size).astype(float)
        q = rng.integers(0, 20, size).astype(float)
        p[0] += 1
        q[-1] += 1
        assert jensen_shannon_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-9)


def test_empty_or_negative_counts_are_rejected():
    with pytest.raises(ValueError, match="sum to zero"):
        normalise([0, 0, 0])
    with pytest.raises(ValueError, match="non-negative"):
        normalise([1, -1])
    with pytest.raises(ValueError, match="differ in length"):
        jensen_shannon_distance([1, 2], [1, 2, 3])


def _cells(rows, keys, labels):
    columns = {key: [row[0][i] for row in rows] for i, key in enumerate(keys)}
    for j, label in enumerate(labels):
        columns[f"y_{label}"] = [bool(row[1][j]) for row in rows]
    return pl.DataFrame(columns)


def test_vectorised_alignment_matches_scipy():
    rng = np.random.default_rng(3)
    labels = ["a", "b", "c", "d"]
    model_rows, human_rows = [], []
    for topic in ["t1", "t2", "t3"]:
        for model in ["m1", "m2"]:
            for _ in range(40):
                model_rows.append(((model, topic), rng.random(4) < [0.6, 0.3, 0.2, 0.1]))
        for group in ["liberal", "conservative"]:
            for _ in range(50):
                human_rows.append(((group, topic), rng.random(4) < [0.2, 0.5, 0.4, 0.3]))
    models = _cells(model_rows, ["model", "topic"], labels)
    humans = _cells(human_rows, ["group", "topic"], labels)
    left = label_distributions(models, ["model", "topic"], labels)
    right = label_distributions(humans, ["group", "topic"], labels)
    scores = jensen_shannon_alignment(left, right, on=["topic"], left_keys=["model"], right_keys=["group"])
    assert scores.height == 3 * 2 * 2
    for model, topic, group, value in scores.select("model", "topic", "group", "alignment").iter_rows():
        p = [
            models.filter((pl.col("model") == model) & (pl.col("topic") == topic))[f"y_{x}"].sum()
            for x in labels
        ]
        q = [
            humans.filter((pl.col("group") == group) & (pl.col("topic") == topic))[f"y_{x}"].sum()
            for x in labels
        ]
        assert value == pytest.approx(1 - jensenshannon(p, q, base=2), abs=1e-9)
