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
    # Where the generating distributions differ, the 95% interval of the corrected score
    # covers 1 - JSD of the generating label probabilities in (nearly) every topic.
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
            covered.append(row["corrected_low"] <= value <= row["corrected_high"])
    assert len(covered) == 4 * len(TOPICS) and np.mean(covered) >= 0.85


def test_liberal_tendency_is_positive_by_default_and_negative_when_steered_conservative(results):
    rows = results["tendency"].filter(pl.col("model") == "m").iter_rows(named=True)
    tendency = {row["prompt_type"]: row for row in rows}
    assert tendency["default"]["tendency"] > 0.2 and tendency["default"]["corrected_low"] > 0
    assert tendency["default"]["p_value"] < 0.05 and tendency["default"]["n_topics"] == len(TOPICS)
    assert tendency["conservative"]["tendency"] < -0.2


def test_steerability_sign(results):
    assert set(results["steerability"]["model"]) == {"m"}  # "odd" has no steered prompts
    steer = {row["group"]: row for row in results["steerability"].iter_rows(named=True)}
    assert steer["conservative"]["steerability"] > 0.2 and steer["conservative"]["corrected_low"] > 0
    assert abs(steer["liberal"]["steerability"]) < 0.1  # already aligned with liberals


def test_baseline_and_share_below_it(results):
    baseline = results["baseline"]
    assert baseline.height == len(TOPICS)
    assert (baseline["corrected_low"] <= baseline["alignment_corrected"]).all()
    assert (baseline["alignment_corrected"] <= baseline["corrected_high"]).all()
    # The published score is a point value: its intervals are on the corrected scale only.
    assert "alignment_low" not in baseline.columns
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
    assert not other["alignment"]["corrected_low"].equals(results["alignment"]["corrected_low"])


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


# --- issue 13: reference points, corrected scores, tests -----------------------------------


@pytest.fixture(scope="module")
def full(data):
    settings = BootstrapSettings(200, 0.95, 3, permutations=99)
    return bootstrap_comparisons(*data, LABELS, ["liberal", "conservative"], settings, sensitivity=True)


def row(frame, **keys):
    selected = frame.filter(pl.all_horizontal([pl.col(k) == v for k, v in keys.items()]))
    assert selected.height == 1, keys
    return selected.row(0, named=True)


def test_unlabelled_shares_are_the_share_of_posts_without_a_label(data, full):
    model, human = data

    def unlabelled(frame):
        return float((~frame.select([f"y_{label}" for label in LABELS]).to_numpy().any(axis=1)).mean())

    got = row(full["alignment"], model="odd", topic="t2", group="liberal")
    cell = model.filter((pl.col("model") == "odd") & (pl.col("topic") == "t2"))
    group = human.filter((pl.col("group") == "liberal") & (pl.col("topic") == "t2"))
    assert got["unlabelled_model"] == pytest.approx(unlabelled(cell)) != got["unlabelled_human"]
    assert got["unlabelled_human"] == pytest.approx(unlabelled(group))


def test_a_model_writing_like_the_group_sits_at_its_ceiling_and_is_not_distinguishable(full):
    same = full["alignment"].filter((pl.col("model") == "m") & (pl.col("prompt_type") == "default"))
    like = same.filter(pl.col("group") == "liberal")
    # The published score sits at its noise ceiling, below 1; the corrected one near 1.
    assert (like["ceiling"] < 0.99).all()
    assert abs((like["alignment"] - like["ceiling"]).mean()) < 0.02
    assert (like["ceiling_corrected"] - 1).abs().max() < 0.02
    assert like["alignment_corrected"].mean() == pytest.approx(1.0, abs=0.02)
    assert (like["corrected_low"] <= like["alignment_corrected"]).all()
    assert (like["alignment_corrected"] <= like["corrected_high"]).all()
    assert (like["p_distinguishable"] > 0.05).mean() >= 0.8
    assert not like["below_baseline"].any()
    unlike = same.filter(pl.col("group") == "conservative")
    assert np.allclose(unlike["p_distinguishable"], 1 / 100)


def test_baseline_has_its_own_ceiling_and_permutation_test(full):
    baseline = full["baseline"]
    # Two groups with identical posts would score the ceiling; these groups differ.
    assert ((baseline["ceiling"] > 0.9) & (baseline["alignment"] < 0.6)).all()
    assert np.allclose(baseline["p_distinguishable"], 1 / 100)
    truth = 1 - jensenshannon(LIBERAL, CONSERVATIVE, base=2)
    assert baseline["alignment_corrected"].mean() == pytest.approx(truth, abs=0.02)


def test_tendency_uses_corrected_scores_and_a_sign_flip_test(full):
    tendency = full["tendency"]
    default = row(tendency, model="m", prompt_type="default")
    assert default["tendency_corrected"] > 0.2 and default["corrected_low"] > 0
    # Six topics, all in one direction: the smallest attainable p-value 2 / 2^6.
    assert default["p_signflip"] == pytest.approx(2 / 2**6) == default["min_attainable_p"]
    assert (tendency["p_holm"] >= tendency["p_bh"] - 1e-12).all()
    assert (tendency["p_bh"] >= tendency["p_signflip"] - 1e-12).all()
    assert default["p_holm"] == pytest.approx(min(1, tendency.height * default["p_signflip"]))


def test_differential_steerability_separates_steering_from_a_change_of_prompt(full):
    steer = {r["group"]: r for r in full["steerability"].iter_rows(named=True)}
    # Steered liberal, the model writes as it does by default: no steerability towards
    # liberals, yet it is far closer to liberals than when steered conservative.
    assert abs(steer["liberal"]["steerability_corrected"]) < 0.1
    assert steer["liberal"]["differential"] > 0.3 and steer["liberal"]["differential_low"] > 0
    assert steer["conservative"]["differential"] > 0.3
    assert steer["conservative"]["differential_p_signflip"] == pytest.approx(2 / 2**6)
    assert steer["liberal"]["differential_n_topics"] == len(TOPICS)
    # One family: four tests (two steerability, two differential) adjusted together.
    assert steer["conservative"]["differential_p_holm"] == pytest.approx(min(1, 4 * 2 / 2**6))


def test_model_summary_and_tested_share_below_the_baseline(full):
    summary = full["model_summary"]
    assert summary.height == full["below_baseline"].height == 8
    odd = row(summary, model="odd", group="conservative")
    assert odd["baseline_gap"] < 0 and odd["gap_high"] < 0
    assert odd["share_below_tested"] == 1.0 and odd["share_below_low"] > 0.5
    like = row(summary, model="m", prompt_type="default", group="liberal")
    assert like["corrected_low"] <= like["alignment_corrected"] <= like["corrected_high"]
    assert like["share_below_tested"] == 0.0 and like["ceiling"] < 0.99
    below = row(full["below_baseline"], model="odd", group="conservative")
    assert below["share_below_tested"] == 1.0 and below["share_below_baseline"] == 1.0


def test_sensitivity_table_compares_every_counting_variant(full):
    table = full["sensitivity"]
    assert table.height == 4 * 4
    assert set(zip(table["counting"], table["unlabelled"], strict=True)) == {
        ("whole", "dropped"), ("whole", "none bin"), ("fractional", "dropped"), ("fractional", "none bin")
    }  # fmt: skip
    configured = table.filter(pl.col("configured"))
    assert (configured["n_changed"] == 0).all() and (configured["max_abs_change"] == 0).all()
    assert (table["n_changed"] <= table["n_conclusions"]).all()
    # Counting unlabelled posts moves these scores (about 15 % of posts carry no label).
    assert table.filter(pl.col("unlabelled") == "none bin")["max_abs_change"].max() > 0.01
