"""Consistency (Santurkar et al. 2023) over the topic categories of the questions, as in
OpinionQA's reference code: the best group over all questions against the best group per
category, a question with several categories counting in each.

The oracle is that code's procedure, step by step: representativeness per group over all
questions; the per-question rows exploded to one per (question, category); the mean per
(group, category); the best group per category; the fraction of categories whose best group
is the overall best."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import REPO

from affalign.opinions.comparisons import InferenceSettings, compare_opinions, consistency_warnings
from affalign.opinions.positional import ALIGNMENT_SCHEMA, HUMAN_ALIGNMENT_SCHEMA, parse_context_slug
from affalign.opinions.survey import TOPICS_SCHEMA, question_topics
from affalign.opinions.tables import run_opinion_tables, write_survey_table

SETTINGS = InferenceSettings(replicates=50, confidence=0.9, permutations=100, seed=5)
NO_HUMANS = pl.DataFrame(schema=HUMAN_ALIGNMENT_SCHEMA)

# Alignment of the model (context "default") with groups a, b, c on six questions of survey
# "s" and one of survey "t", and each question's topic categories.
QUESTIONS = {
    # question: ((a, b, c), categories)
    "q1": ((0.9, 0.5, 0.6), ["Economy", "Policy"]),
    "q2": ((0.2, 0.9, 0.3), ["Economy", "Health"]),
    "q3": ((0.8, 0.7, 0.75), ["Health"]),
    "q4": ((0.4, 0.6, 0.9), ["Science"]),
    "q5": ((0.9, 0.3, 0.2), ["Policy"]),
    "q6": ((0.3, 0.9, 0.2), []),  # no category: counts in the overall best only
}
SURVEY_T = {"t1": ((0.5, 0.5, 0.8), ["Science"])}  # the same category name in another survey


def alignment(questions: dict, survey: str = "s", context: str = "default", groups=("a", "b", "c")):
    method, steered = parse_context_slug(context)
    rows = [
        ("m", context, method, steered, survey, qid, group, value)
        for qid, (values, _) in questions.items()
        for group, value in zip(groups, values, strict=True)
    ]
    return pl.DataFrame(rows, schema=ALIGNMENT_SCHEMA, orient="row")


def topics(questions: dict, survey: str = "s") -> pl.DataFrame:
    rows = [(survey, qid, topic) for qid, (_, names) in questions.items() for topic in names]
    return pl.DataFrame(rows, schema=TOPICS_SCHEMA, orient="row")


def consistency_row(frame: pl.DataFrame, topic_frame: pl.DataFrame | None, context: str = "default") -> dict:
    table = compare_opinions(frame, NO_HUMANS, SETTINGS, topic_frame)["consistency"]
    return table.filter(pl.col("context") == context).row(0, named=True)


def reference_consistency(frame: pl.DataFrame, topic_frame: pl.DataFrame) -> float:
    """OpinionQA's consistency notebook, on one model, context and set of groups."""
    overall = frame.group_by("group").agg(pl.col("alignment").mean()).sort("alignment")
    best_overall = overall["group"][-1]
    exploded = frame.join(topic_frame, on=["survey", "question_id"], how="inner")
    per_topic = exploded.group_by("topic", "group").agg(pl.col("alignment").mean())
    best = per_topic.sort("alignment").group_by("topic").agg(pl.col("group").last())
    return float((best["group"] == best_overall).mean())


def test_consistency_over_categories_computed_by_hand():
    frame = pl.concat([alignment(QUESTIONS), alignment(SURVEY_T, survey="t")])
    row = consistency_row(frame, pl.concat([topics(QUESTIONS), topics(SURVEY_T, survey="t")]))
    # Over all seven questions: a 4.0/7, b 4.4/7, c 3.75/7, so b is best overall.
    assert row["best_group"] == "b"
    # Economy (q1, q2): a 0.55, b 0.70, c 0.45 -> b (agrees). Without q2, a would win.
    # Health (q2, q3): a 0.50, b 0.80, c 0.525 -> b (agrees). Without q2, a would win.
    # Policy (q1, q5): a 0.90 -> a. Science (q4 of s, t1 of t, one category): c 0.85 -> c.
    # Two of four categories agree. Counting q2 in one category only gives 1/4, leaving it
    # out gives 0, leaving q6 out of the overall best (a then) gives 1/4.
    assert row["consistency"] == pytest.approx(0.5)
    assert row["n_topics"] == 4 and row["n_surveys"] == 2 and row["n_groups"] == 3
    assert row["consistency_note"] is None


def test_consistency_matches_the_reference_procedure_on_random_studies():
    rng = np.random.default_rng(9)
    names = ["Economy", "Health", "Science", "Policy", "Family"]
    for _ in range(40):
        questions = {
            f"q{q}": (
                tuple(rng.uniform(0.4, 1.0, size=4)),
                [str(n) for n in rng.choice(names, size=int(rng.integers(1, 4)), replace=False)],
            )
            for q in range(int(rng.integers(4, 15)))
        }
        frame = alignment(questions, groups=("a", "b", "c", "d"))
        topic_frame = topics(questions)
        if topic_frame["topic"].n_unique() < 2:
            continue
        assert consistency_row(frame, topic_frame)["consistency"] == pytest.approx(
            reference_consistency(frame, topic_frame)
        )


def test_without_categories_or_with_one_consistency_is_null_and_says_why():
    frame = alignment(QUESTIONS)
    row = consistency_row(frame, None)
    # Over the surveys (one here) or without categories the value would be 1 by construction.
    assert row["consistency"] is None and row["n_topics"] == 0 and row["best_group"] == "b"
    assert row["consistency_note"].startswith("no topic categories: the questions tables have no 'topic'")
    one = topics(QUESTIONS).with_columns(pl.lit("Economy").alias("topic")).unique()
    row = consistency_row(frame, one)
    assert row["consistency"] is None and row["n_topics"] == 1
    assert row["consistency_note"] == (
        "1 topic category ('Economy') among the context's questions; consistency needs at least two"
    )


def test_one_compared_group_gives_no_consistency():
    frame = alignment({q: ((values[0],), names) for q, (values, names) in QUESTIONS.items()}, groups=("a",))
    row = consistency_row(frame, topics(QUESTIONS))
    assert row["consistency"] is None and row["n_groups"] == 1
    assert row["consistency_note"] == "1 group compared; consistency needs at least two"


def test_consistency_warnings_give_one_line_per_reason():
    frame = pl.concat([alignment(QUESTIONS), alignment(QUESTIONS, context="qa-a")])
    table = compare_opinions(frame, NO_HUMANS, SETTINGS)["consistency"]
    assert table.height == 2 and table["consistency"].null_count() == 2
    (line,) = consistency_warnings(table)
    assert line.startswith("consistency is empty for 2 of 2 model × context rows: no topic categories")
    computed = compare_opinions(frame, NO_HUMANS, SETTINGS, topics(QUESTIONS))["consistency"]
    assert computed["consistency"].null_count() == 0 and consistency_warnings(computed) == []


def demo_survey_tables(tmp_path, drop_topics: bool = False) -> list:
    """The demo's two survey tables, written as the survey_table job does."""
    root = REPO / "resources" / "demo" / "survey"
    paths = []
    for survey, form, answers, group_column in [
        ("science", "distribution", "science-answers.csv", "group"),
        ("economy", "responses", "economy-responses.csv", "ideology"),
    ]:
        questions = root / f"{survey}-questions.csv"
        if drop_topics:
            questions = tmp_path / f"{survey}-questions.csv"
            pl.read_csv(root / f"{survey}-questions.csv").drop("topic").write_csv(questions)
        settings = {"form": form, "groups": ["liberal", "conservative"], "compare_groups": [],
                    "group_column": group_column, "weight_column": "weight"}  # fmt: skip
        paths.append(tmp_path / f"{survey}.parquet")
        write_survey_table(
            questions=questions, answers=root / answers, settings=settings, survey=survey, output=paths[-1]
        )
    return paths


def model_shard(tmp_path, surveys: list) -> object:
    """A model whose default answers are the liberal group's on science, the conservative
    group's on the economy."""
    human = pl.concat([pl.read_parquet(path) for path in surveys], how="diagonal_relaxed")
    as_group = (
        pl.when(pl.col("survey") == "science").then(pl.lit("liberal")).otherwise(pl.lit("conservative"))
    )
    shard = human.filter(pl.col("group") == as_group).select(
        pl.lit("m").alias("model"), "survey", pl.lit("default").alias("context"),
        pl.lit("default").alias("method"), pl.lit(None, dtype=pl.String).alias("steered_group"),
        "question_id", "letter", "option", "ordinal", "is_refusal", "p", "p_ordinal",
        pl.col("refusal_rate").alias("refusal_mass"),
    )  # fmt: skip
    path = tmp_path / "shard.parquet"
    shard.write_parquet(path)
    return path


def run_tables(tmp_path, surveys: list) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The consistency and question alignment tables of the opinion tables job."""
    names = ["alignment", "representativeness", "baselines", "steerability", "steerability_slope"]
    names += ["differential_steerability", "consistency", "refusals"]
    outputs = {name: str(tmp_path / f"{name}.parquet") for name in names}
    run_opinion_tables(
        shards=[model_shard(tmp_path, surveys)], surveys=surveys, outputs=outputs, inference=SETTINGS
    )
    return pl.read_parquet(outputs["consistency"]), pl.read_parquet(outputs["alignment"])


def test_the_demo_survey_gives_a_consistency_over_its_categories(tmp_path, capfd):
    surveys = demo_survey_tables(tmp_path)
    consistency, question_alignment = run_tables(tmp_path, surveys)
    row = consistency.row(0, named=True)
    # Economy, Government (a science and an economy question), Health, Science.
    assert row["n_topics"] == 4 and row["n_surveys"] == 2 and row["consistency_note"] is None
    human = pl.concat([pl.read_parquet(path) for path in surveys])
    compared = question_alignment.filter(pl.col("group") != "overall")
    expected = reference_consistency(compared, question_topics(human))
    # Liberal on science (Science, Health), conservative on the economy (Economy): whichever
    # is best overall, some category disagrees.
    assert 0 < expected < 1 and row["consistency"] == pytest.approx(expected)
    assert "consistency is empty" not in capfd.readouterr().out


def test_the_tables_job_logs_one_line_when_the_questions_have_no_categories(tmp_path, capfd):
    surveys = demo_survey_tables(tmp_path, drop_topics=True)
    # A survey table written before the topic column existed reads as one without categories.
    pl.read_parquet(surveys[0]).drop("topic").write_parquet(surveys[0])
    row = run_tables(tmp_path, surveys)[0].row(0, named=True)
    assert row["consistency"] is None and row["n_surveys"] == 2
    lines = [line for line in capfd.readouterr().out.splitlines() if "consistency" in line]
    assert lines == [
        "WARNING: consistency is empty for 1 of 1 model × context rows: no topic categories: the "
        "questions tables have no 'topic' column (or it is empty); consistency needs at least two "
        "categories"
    ]
