"""The one Jensen–Shannon kernel, with scipy as the oracle, and the scores the stage publishes."""

import math

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon

from affalign.align.comparisons import BootstrapSettings
from affalign.align.divergence import alignment, jensen_shannon_distance
from affalign.align.stage import AlignSettings, DropPolicy, compare


def test_identical_distributions_align_perfectly_whatever_their_scale():
    assert alignment([3, 1, 0, 6], [0.3, 0.1, 0.0, 0.6]) == pytest.approx(1.0)


def test_disjoint_distributions_do_not_align():
    assert alignment([1, 2, 0, 0], [0, 0, 5, 1]) == pytest.approx(0.0)
    assert jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_known_value_in_base_two():
    divergence = 0.5 * math.log2(4 / 3) + 0.5 * (0.5 * math.log2(2 / 3) + 0.5)
    assert jensen_shannon_distance([1, 0], [1, 1]) == pytest.approx(math.sqrt(divergence), abs=1e-12)


def test_rows_match_scipy_and_empty_rows_are_undefined():
    rng = np.random.default_rng(7)
    p = rng.integers(0, 20, (300, 9)).astype(float)
    q = rng.integers(0, 20, (300, 9)).astype(float)
    p[:, 0] += 1
    q[:, -1] += 1
    expected = [jensenshannon(a, b, base=2) for a, b in zip(p, q, strict=True)]
    np.testing.assert_allclose(jensen_shannon_distance(p, q), expected, atol=1e-12)
    # One row against many (broadcast), and a row without counts.
    np.testing.assert_allclose(jensen_shannon_distance(p[0], q), [jensenshannon(p[0], b, base=2) for b in q])
    assert np.isnan(jensen_shannon_distance([[0, 0, 0]], [[1, 2, 3]]))[0]


def _posts(rng, probabilities, n, **keys):
    flags = rng.random((n, len(probabilities))) < probabilities
    frame = {key: [value] * n for key, value in keys.items()}
    frame.update({f"y_{label}": flags[:, i] for i, label in enumerate("abcd")})
    return pl.DataFrame(frame)


def test_published_scores_match_scipy_on_the_label_counts():
    rng = np.random.default_rng(3)
    model = pl.concat(
        [
            _posts(rng, [0.6, 0.3, 0.2, 0.1], 40, model=m, prompt_type="default", issue="i", topic=t)
            for m in ("m1", "m2")
            for t in ("t1", "t2", "t3")
        ]
    )
    human = pl.concat(
        [
            _posts(rng, [0.2, 0.5, 0.4, 0.3], 50, issue="i", topic=t, group=g)
            for g in ("liberal", "conservative")
            for t in ("t1", "t2", "t3")
        ]
    )
    settings = AlignSettings(
        groups=("liberal", "conservative"),
        none_bin=False,
        policy=DropPolicy(),
        bootstrap=BootstrapSettings(20, 0.95, 1),
        plutchik_weight=None,
    )
    results = compare(model, human, list("abcd"), settings)
    scores = results["alignment"]
    assert scores.height == 2 * 3 * 2
    for row in scores.iter_rows(named=True):
        cell = model.filter((pl.col("model") == row["model"]) & (pl.col("topic") == row["topic"]))
        group = human.filter((pl.col("group") == row["group"]) & (pl.col("topic") == row["topic"]))
        p = [cell[f"y_{x}"].sum() for x in "abcd"]
        q = [group[f"y_{x}"].sum() for x in "abcd"]
        assert row["alignment"] == pytest.approx(1 - jensenshannon(p, q, base=2), abs=1e-12)
        assert row["jsd"] == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
        assert (row["n_model_posts"], row["n_human_posts"]) == (40, 50)
    baseline = results["baseline"]
    assert baseline.height == 3 and set(baseline["n_posts_a"]) == {50}


def test_stage_counts_unlabelled_posts_in_a_none_bin_and_warns_when_topics_cannot_reach_alpha():
    from affalign.align.stage import ALIGNMENT_INFERENCE_COLUMNS, inference_warnings

    rng = np.random.default_rng(4)
    keys = {"model": "m", "issue": "i"}
    model = pl.concat(
        [_posts(rng, [0.3, 0.2, 0.1, 0.1], 40, prompt_type=p, topic=t, **keys) for p in ("default", "liberal")
         for t in ("t1", "t2", "t3")]
    )  # fmt: skip
    groups = ("liberal", "conservative")
    human = pl.concat(
        [
            _posts(rng, [0.2, 0.5, 0.4, 0.3], 50, issue="i", topic=t, group=g)
            for g in groups
            for t in ("t1", "t2", "t3")
        ]
    )
    settings = AlignSettings(none_bin=True, bootstrap=BootstrapSettings(20, 0.95, 1, permutations=9))
    results = compare(model, human, list("abcd"), settings)
    first = results["alignment"].row(0, named=True)
    cell = model.filter((pl.col("prompt_type") == first["prompt_type"]) & (pl.col("topic") == first["topic"]))
    group = human.filter((pl.col("group") == first["group"]) & (pl.col("topic") == first["topic"]))

    def counts(frame):
        flags = frame.select([f"y_{x}" for x in "abcd"]).to_numpy()
        return [*flags.sum(axis=0), (~flags.any(axis=1)).sum()]

    assert first["alignment"] == pytest.approx(
        1 - jensenshannon(counts(cell), counts(group), base=2), abs=1e-12
    )
    assert set(ALIGNMENT_INFERENCE_COLUMNS) <= set(results["alignment"].columns)
    # Three topics: no test over topics can reach p < 0.05 (2 / 2^3 = 0.25), and the log says so.
    assert (results["tendency"]["min_attainable_p"] == 0.25).all()
    lines = inference_warnings(results, 0.05)
    assert any("liberal tendency on i" in line and "0.25" in line for line in lines)
    assert any(line.startswith("WARNING: steerability on i") for line in lines)
