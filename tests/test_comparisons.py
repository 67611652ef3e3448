"""Bootstrap comparisons on constructed data with known answers."""

import numpy as np
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon

from affalign.align.comparisons import BootstrapSettings, bootstrap_comparisons
from affalign.align.divergence import plutchik_smoothing_matrix

LABELS = ["anger", "fear", "joy", "trust"]
LIBERAL = [0.1, 0.6, 0.2, 0.5]
CONSERVATIVE = [0.6, 0.1, 0.5, 0.1]
ODD = [0.0, 0.0, 0.05, 0.9]
TOPICS = [f"t{i}" for i in range(6)]


def posts(rng, probabilities, n, **keys):
    flags = rng.random((n, len(LABELS))) < probabilities
    frame = {key: [value] * n for key, value in keys.items()}
    frame.update({f"y_{label}": flags[:, i] for i, label in enumerate(LABELS)})
    return pl.DataFrame(frame)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    model, human = [], []
    for topic in TOPICS:
        human.append(posts(rng, LIBERAL, 300, issue="covid", topic=topic, group="liberal"))
        human.append(posts(rng, CONSERVATIVE, 300, issue="covid", topic=topic, group="conservative"))
        # The model leans liberal by default and follows a conservative steer.
        model.append(posts(rng, LIBERAL, 300, model="m", prompt_type="default", issue="covid", topic=topic))
        model.append(posts(rng, LIBERAL, 300, model="m", prompt_type="liberal", issue="covid", topic=topic))
        model.append(
            posts(rng, CONSERVATIVE, 300, model="m", prompt_type="conservative", issue="covid", topic=topic)
        )
        # A model far from both groups.
        model.append(posts(rng, ODD, 300, model="odd", prompt_type="default", issue="covid", topic=topic))
    return pl.concat(model), pl.concat(human)


@pytest.fixture(scope="module")
def results(data):
    return bootstrap_comparisons(*data, LABELS, ["liberal", "conservative"], BootstrapSettings(200, 0.95, 3))


def test_point_scores_are_the_scores_of_the_observed_counts(data, results):
    model, human = data
    for row in results["alignment"].head(12).iter_rows(named=True):
        cell = model.filter(
            (pl.col("model") == row["model"])
            & (pl.col("prompt_type") == row["prompt_type"])
            & (pl.col("topic") == row["topic"])
        )
        group = human.filter((pl.col("group") == row["group"]) & (pl.col("topic") == row["topic"]))
        p = [cell[f"y_{label}"].sum() for label in LABELS]
        q = [group[f"y_{label}"].sum() for label in LABELS]
        assert row["alignment"] == pytest.approx(1 - jensenshannon(p, q, base=2), abs=1e-12)


def test_intervals_cover_the_population_score(results):
    # Where the generating distributions differ, the 95% interval covers 1 - JSD of the
    # generating label probabilities in (nearly) every topic.
    truth = {
        ("m", "default", "conservative"): 1 - jensenshannon(LIBERAL, CONSERVATIVE, base=2),
        ("m", "conservative", "liberal"): 1 - jensenshannon(CONSERVATIVE, LIBERAL, base=2),
        ("odd", "default", "liberal"): 1 - jensenshannon(ODD, LIBERAL, base=2),
        ("odd", "default", "conservative"): 1 - jensenshannon(ODD, CONSERVATIVE, base=2),
    }
    covered = []
    for row in results["alignment"].iter_rows(named=True):
        value = truth.get((row["model"], row["prompt_type"], row["group"]))
        if value is not None:
            covered.append(row["alignment_low"] <= value <= row["alignment_high"])
    assert len(covered) == 4 * len(TOPICS) and np.mean(covered) >= 0.85


def test_liberal_tendency_is_positive_by_default_and_negative_when_steered_conservative(results):
    rows = results["tendency"].filter(pl.col("model") == "m").iter_rows(named=True)
    tendency = {row["prompt_type"]: row for row in rows}
    assert tendency["default"]["tendency"] > 0.2 and tendency["default"]["tendency_low"] > 0
    assert tendency["default"]["p_value"] < 0.05 and tendency["default"]["n_topics"] == len(TOPICS)
    assert tendency["conservative"]["tendency"] < -0.2


def test_steerability_sign(results):
    assert set(results["steerability"]["model"]) == {"m"}  # "odd" has no steered prompts
    steer = {row["group"]: row for row in results["steerability"].iter_rows(named=True)}
    assert steer["conservative"]["steerability"] > 0.2 and steer["conservative"]["steerability_low"] > 0
    assert abs(steer["liberal"]["steerability"]) < 0.1  # already aligned with liberals


def test_baseline_and_share_below_it(results):
    baseline = results["baseline"]
    assert baseline.height == len(TOPICS)
    assert (baseline["alignment_low"] <= baseline["alignment"]).all()
    below = results["below_baseline"].filter(pl.col("prompt_type") == "default")
    shares = {
        (m, g): share for m, g, share in below.select("model", "group", "share_below_baseline").iter_rows()
    }
    assert shares[("odd", "liberal")] == shares[("odd", "conservative")] == 1.0
    assert shares[("m", "liberal")] == 0.0  # the default model writes like liberals


def test_bootstrap_is_seeded(data, results):
    again = bootstrap_comparisons(*data, LABELS, ["liberal", "conservative"], BootstrapSettings(200, 0.95, 3))
    assert again["alignment"].equals(results["alignment"])
    other = bootstrap_comparisons(*data, LABELS, ["liberal", "conservative"], BootstrapSettings(200, 0.95, 4))
    assert not other["alignment"]["alignment_low"].equals(results["alignment"]["alignment_low"])


def test_smoothing_leaves_identical_distributions_at_one():
    rng = np.random.default_rng(2)
    same = posts(rng, LIBERAL, 100, issue="covid", topic="t", group="liberal")
    human = pl.concat([same, same.with_columns(pl.lit("conservative").alias("group"))])
    model = same.drop("group").with_columns(
        pl.lit("m").alias("model"), pl.lit("default").alias("prompt_type")
    )
    smoothed = bootstrap_comparisons(
        model, human, LABELS, ["liberal", "conservative"], BootstrapSettings(20, 0.9, 0),
        smoothing=plutchik_smoothing_matrix(LABELS, 0.2),
    )  # fmt: skip
    assert smoothed["alignment"]["alignment"].to_list() == pytest.approx([1.0, 1.0])
    assert smoothed["baseline"]["alignment"].to_list() == pytest.approx([1.0])
