"""Question-level inference for positional alignment: resampling, intervals, the steerability
slope, differential steerability (with its adjusted tests) and consistency. The shared
intervals and the sign-flip test themselves are checked in test_stats.py.

numpy/scipy are the oracles; statistical claims are checked on seeded simulations whose
truth is known."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from affalign.opinions.comparisons import InferenceSettings, compare_opinions
from affalign.opinions.positional import ALIGNMENT_SCHEMA, HUMAN_ALIGNMENT_SCHEMA, parse_context_slug
from affalign.opinions.resampling import (
    consistency,
    question_resamples,
    resampled_means,
    slope_through_origin,
)
from affalign.opinions.survey import TOPICS_SCHEMA
from affalign.stats import benjamini_hochberg, holm, percentile_interval

SETTINGS = InferenceSettings(replicates=400, confidence=0.95, permutations=2000, seed=11)
ADJUSTED = ["p_holm", "p_bh"]


def alignment_frame(
    cells: dict[tuple[str, str], np.ndarray], surveys: list[str] | None = None, model: str = "m"
) -> pl.DataFrame:
    """A question-alignment table from {(context, group): alignment per question}."""
    rows = []
    for (context, group), values in cells.items():
        method, steered = parse_context_slug(context)
        names = surveys or ["s"] * len(values)
        for q, value in enumerate(values):
            rows.append((model, context, method, steered, names[q], f"q{q:03d}", group, float(value)))
    return pl.DataFrame(rows, schema=ALIGNMENT_SCHEMA, orient="row")


def human_frame(groups: dict[str, np.ndarray]) -> pl.DataFrame:
    rows = [
        ("s", f"q{q:03d}", group, float(value))
        for group, values in groups.items()
        for q, value in enumerate(values)
    ]
    return pl.DataFrame(rows, schema=HUMAN_ALIGNMENT_SCHEMA, orient="row")


# --- pure functions against numpy / scipy ------------------------------------------------------


def test_question_resamples_are_seeded_resamples_of_every_size():
    counts = question_resamples(7, 50, seed=4)
    assert counts.shape == (50, 7) and (counts.sum(axis=1) == 7).all()
    assert (question_resamples(7, 50, seed=4) == counts).all()
    assert not (question_resamples(7, 50, seed=5) == counts).all()


def test_resampled_means_equal_the_means_of_explicit_resamples():
    rng = np.random.default_rng(0)
    values = rng.uniform(size=(3, 9))
    values[1, [2, 5]] = np.nan  # a cell without two of the questions
    counts = question_resamples(9, 30, seed=1)
    found = resampled_means(values, counts)
    for b in range(30):
        drawn = np.repeat(np.arange(9), counts[b])
        for c in range(3):
            expected = np.nanmean(values[c, drawn]) if np.isfinite(values[c, drawn]).any() else np.nan
            assert found[c, b] == pytest.approx(expected, nan_ok=True)


def test_slope_through_origin_equals_least_squares_without_intercept():
    rng = np.random.default_rng(8)
    x, y = rng.uniform(0.6, 0.9, size=12), rng.uniform(0.6, 0.95, size=12)
    expected = np.linalg.lstsq(x[:, None], y, rcond=None)[0][0]
    assert slope_through_origin(x, y) == pytest.approx(expected)
    assert np.isnan(slope_through_origin([0.0], [1.0]))


def test_consistency_counts_topics_whose_best_group_is_the_overall_best():
    overall = {"a": 0.8, "b": 0.7, "c": 0.6}
    topics = [{"a": 0.9, "b": 0.7, "c": 0.1}, {"a": 0.5, "b": 0.7, "c": 0.6}, {"a": 0.6, "b": 0.6, "c": 0.2}]
    # Topic 1 agrees, topic 2 prefers b, topic 3 ties a with b (counts as agreeing).
    assert consistency(overall, topics) == pytest.approx(2 / 3)
    assert np.isnan(consistency(overall, [{"a": np.nan, "b": np.nan}]))  # no usable topic
    assert np.isnan(consistency(overall, []))


# --- the published tables ------------------------------------------------------------------------


def test_representativeness_interval_covers_the_question_population_mean():
    """400 studies, each asking 80 questions drawn from a population of question
    alignments whose mean is known: the 95 % interval holds it in 90–98 % of studies."""
    rng = np.random.default_rng(21)
    population = rng.beta(8, 2, size=20_000)
    truth = population.mean()
    counts = question_resamples(80, 1000, seed=3)
    covered = []
    for _ in range(400):
        sample = rng.choice(population, size=80)
        low, high = percentile_interval(resampled_means(sample[None, :], counts), 0.95)
        covered.append(low[0] <= truth <= high[0])
    assert 0.90 <= np.mean(covered) <= 0.98


def format_effect_study(rng: np.random.Generator, questions: int, steering: float) -> pl.DataFrame:
    """Two parties; every context raises alignment with both by 0.10 (a format effect), and
    steering towards a party adds ``steering`` for that party only."""
    cells = {}
    base = {g: rng.beta(6, 2, size=questions) * 0.9 for g in ("lib", "con")}
    for group in ("lib", "con"):
        cells[("default", group)] = base[group] + rng.normal(0, 0.02, questions)
        for method in ("qa", "bio", "portray"):
            for towards in ("lib", "con"):
                boost = 0.10 + (steering if towards == group else 0.0)
                noise = rng.normal(0, 0.05, questions)
                cells[(f"{method}-{towards}", group)] = base[group] + boost + noise
    return alignment_frame(cells)


def test_a_format_effect_is_steerability_but_not_differential_steerability():
    rng = np.random.default_rng(13)
    tables = compare_opinions(format_effect_study(rng, 60, 0.0), human_frame({}), SETTINGS)
    steer = tables["steerability"]
    assert steer["steerability"].min() > 0.09 and (steer["steerability_low"] > 0).all()
    differential = tables["differential_steerability"]
    assert differential.height == 2 * 3  # two parties x three methods
    assert differential["differential_steerability"].abs().max() < 0.03
    # The intervals hold 0 (the truth); the format effect shows as towards and away alike.
    assert ((differential["differential_low"] <= 0) & (differential["differential_high"] >= 0)).sum() >= 5
    gain = differential["away_representativeness"] - differential["default_representativeness"]
    assert gain.min() > 0.08


def test_differential_steerability_test_holds_its_level_and_finds_real_steering():
    rng = np.random.default_rng(17)
    null_p, steered_p = [], []
    for _ in range(70):
        null_p += compare_opinions(format_effect_study(rng, 30, 0.0), human_frame({}), SETTINGS)[
            "differential_steerability"
        ]["p_value"].to_list()
    for _ in range(10):
        table = compare_opinions(format_effect_study(rng, 30, 0.08), human_frame({}), SETTINGS)[
            "differential_steerability"
        ]
        steered_p += table["p_value"].to_list()
        assert table["differential_steerability"].to_numpy() == pytest.approx(0.08, abs=0.04)
    # 420 tests under the null (6 per study, not independent within a study).
    assert np.mean(np.array(null_p) < 0.05) <= 0.08
    assert np.mean(np.array(steered_p) < 0.05) >= 0.9


def test_differential_p_values_are_adjusted_across_every_test_of_the_run():
    rng = np.random.default_rng(23)
    first = format_effect_study(rng, 30, 0.1)
    second = format_effect_study(rng, 30, 0.0).with_columns(pl.lit("other").alias("model"))
    table = compare_opinions(pl.concat([first, second]), human_frame({}), SETTINGS)[
        "differential_steerability"
    ]
    at = table.columns.index("p_value")
    assert table.columns[at : at + 3] == ["p_value", "p_holm", "p_bh"]
    assert table.height == 12  # one family: two models x three methods x two groups
    p = table["p_value"].to_numpy()
    assert np.allclose(table["p_holm"], holm(p)) and np.allclose(table["p_bh"], benjamini_hochberg(p))
    # The smallest p-value is multiplied by the whole family's size, not by one model's six tests.
    smallest = int(np.argmin(p))
    assert table["p_holm"][smallest] == pytest.approx(min(1.0, 12 * p[smallest]))
    assert (table["p_holm"] >= table["p_bh"] - 1e-15).all()
    assert (table["p_bh"] >= table["p_value"] - 1e-15).all()
    assert (table.filter(pl.col("model") == "m")["p_bh"] < 0.05).all()  # real steering survives


def test_slope_and_consistency_tables():
    rng = np.random.default_rng(3)
    surveys = ["econ"] * 10 + ["science"] * 10
    default = {
        "lib": rng.uniform(0.6, 0.7, 20),
        "con": rng.uniform(0.7, 0.8, 20),
        "overall": np.full(20, 0.7),
    }
    default["lib"][10:] += 0.3  # lib is represented best on science only
    cells = {("default", g): v for g, v in default.items()}
    cells |= {("qa-lib", g): v + 0.05 for g, v in default.items()}
    cells |= {("qa-con", g): v + 0.02 for g, v in default.items()}
    tables = compare_opinions(alignment_frame(cells, surveys), human_frame({}), SETTINGS)
    steer = tables["steerability"].sort("group")
    expected = np.linalg.lstsq(
        steer["default_representativeness"].to_numpy()[:, None],
        steer["steered_representativeness"],
        rcond=None,
    )[0][0]
    slope = tables["steerability_slope"].row(0, named=True)
    assert slope["slope"] == pytest.approx(expected) and slope["n_groups"] == 2
    assert slope["slope_low"] <= slope["slope"] <= slope["slope_high"]
    # Two surveys but no topic categories: consistency is null, not 1 or 0.5 over the surveys.
    row = tables["consistency"].filter(pl.col("context") == "default").row(0, named=True)
    assert row["best_group"] == "lib" and row["consistency"] is None and row["n_topics"] == 0
    assert "no topic categories" in row["consistency_note"]
    topics = pl.DataFrame(
        {"survey": surveys, "question_id": [f"q{q:03d}" for q in range(20)], "topic": surveys},
        schema=TOPICS_SCHEMA,
    )
    tables = compare_opinions(alignment_frame(cells, surveys), human_frame({}), SETTINGS, topics)
    row = tables["consistency"].filter(pl.col("context") == "default").row(0, named=True)
    # Overall lib: mean 0.65 + 0.15 = 0.80 beats con 0.75; econ prefers con, science lib.
    assert row["best_group"] == "lib" and row["consistency"] == pytest.approx(0.5)
    assert row["n_surveys"] == 2 and row["n_groups"] == 2  # overall is not a candidate
    assert row["n_topics"] == 2 and row["consistency_note"] is None


def test_tables_are_seeded_and_a_new_model_leaves_the_others_unchanged():
    rng = np.random.default_rng(1)
    first = format_effect_study(rng, 25, 0.05)
    second = format_effect_study(rng, 25, 0.0).with_columns(pl.lit("other").alias("model"))
    alone = compare_opinions(first, human_frame({}), SETTINGS)
    again = compare_opinions(first, human_frame({}), SETTINGS)
    both = compare_opinions(pl.concat([first, second]), human_frame({}), SETTINGS)
    for name in ("representativeness", "differential_steerability", "steerability"):
        assert alone[name].equals(again[name])
        # Adjusted p-values depend on their family (every differential test of the run).
        own = both[name].filter(pl.col("model") == "m").drop(ADJUSTED, strict=False)
        assert alone[name].drop(ADJUSTED, strict=False).equals(own), name
    # A larger family can only raise Holm's adjusted p-values.
    grown = both["differential_steerability"].filter(pl.col("model") == "m")["p_holm"]
    assert (grown >= alone["differential_steerability"]["p_holm"]).all()
    other_seed = compare_opinions(first, human_frame({}), InferenceSettings(400, 0.95, 2000, seed=12))
    assert not other_seed["representativeness"].equals(alone["representativeness"])


def test_human_baselines_cover_every_group_with_intervals():
    rng = np.random.default_rng(4)
    groups = {g: rng.uniform(0.7, 0.95, 40) for g in ("lib", "con", "age-65", "widowed")}
    groups["widowed"] -= 0.2
    baselines = compare_opinions(alignment_frame({}), human_frame(groups), SETTINGS)["baselines"]
    per_group = baselines.filter(pl.col("baseline") == "group vs overall")
    assert sorted(per_group["group"]) == sorted(groups)
    worst = baselines.filter(pl.col("baseline") == "human (worst)").row(0, named=True)
    assert worst["group"] == "widowed"
    assert worst["representativeness"] == pytest.approx(groups["widowed"].mean())
    assert worst["representativeness_low"] < worst["representativeness"] < worst["representativeness_high"]
