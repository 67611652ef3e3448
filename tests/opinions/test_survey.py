"""Survey input: questions, answers in both forms, and the errors users see."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import REPO
from polars.testing import assert_frame_equal

from affalign.opinions.survey import SurveyError, question_topics, read_questions, read_survey

QUESTIONS = """question_id,question,option,ordinal,refusal
q1,Rate the economy,Good,1,false
q1,Rate the economy,Fair,2,false
q1,Rate the economy,Poor,3,false
q1,Rate the economy,Refused,,true
q2,Smaller or bigger government?,Smaller,1,no
q2,Smaller or bigger government?,Bigger,2,no
"""

RESPONSES = """respondent,ideology,w,q1,q2
r1,liberal,2.0,Good,Bigger
r2,liberal,1.0,Fair,Smaller
r3,conservative,1.5,Poor,Smaller
r4,conservative,0.5,Refused,
r5,,1.0,Fair,Bigger
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def survey(tmp_path: Path, questions: str = QUESTIONS, answers: str = RESPONSES, **options) -> pl.DataFrame:
    settings = {
        "form": "responses",
        "groups": ["liberal", "conservative"],
        "survey": "s",
        "group_column": "ideology",
        "weight_column": "w",
        **options,
    }
    return read_survey(
        write(tmp_path, "questions.csv", questions), write(tmp_path, "answers.csv", answers), **settings
    )


def cell(table: pl.DataFrame, question: str, group: str, letter: str, column: str):
    return table.filter(
        (pl.col("question_id") == question) & (pl.col("group") == group) & (pl.col("letter") == letter)
    )[column].item()


def test_questions_keep_their_option_order_and_refusals(tmp_path):
    questions = read_questions(write(tmp_path, "q.csv", QUESTIONS))
    assert [q.id for q in questions] == ["q1", "q2"]
    assert questions[0].letters == ("A", "B", "C", "D")
    assert questions[0].refusal == (False, False, False, True)
    assert questions[0].ordinals == (1.0, 2.0, 3.0, None)


def test_raw_responses_are_aggregated_with_their_weights(tmp_path):
    table = survey(tmp_path)
    # q1 liberal: Good 2.0, Fair 1.0 -> 2/3, 1/3; no refusals.
    assert cell(table, "q1", "liberal", "A", "p_ordinal") == pytest.approx(2 / 3)
    assert cell(table, "q1", "liberal", "B", "p_ordinal") == pytest.approx(1 / 3)
    assert cell(table, "q1", "liberal", "A", "n_responses") == 1
    # q1 conservative: Poor 1.5, Refused 0.5 -> ordinal Poor = 1; refusal rate 0.5 / 2.0.
    assert cell(table, "q1", "conservative", "C", "p_ordinal") == pytest.approx(1.0)
    assert cell(table, "q1", "conservative", "D", "p") == pytest.approx(0.25)
    assert cell(table, "q1", "conservative", "A", "refusal_rate") == pytest.approx(0.25)
    assert cell(table, "q1", "conservative", "D", "p_ordinal") is None
    # overall counts everyone, the respondent without a group too: total 6.0, refusals 0.5.
    assert cell(table, "q1", "overall", "A", "p") == pytest.approx(2.0 / 6.0)
    assert cell(table, "q1", "overall", "B", "p_ordinal") == pytest.approx(2.0 / 5.5)
    assert cell(table, "q1", "overall", "B", "weight") == pytest.approx(2.0)
    # q2: r4 was not asked (empty), so conservative is Smaller 1.5 only.
    assert cell(table, "q2", "conservative", "A", "p_ordinal") == pytest.approx(1.0)
    assert cell(table, "q2", "overall", "B", "p_ordinal") == pytest.approx(3.0 / 5.5)
    sums = table.group_by("question_id", "group").agg(pl.col("p").sum(), pl.col("p_ordinal").sum())
    assert sums["p"].to_list() == pytest.approx([1.0] * sums.height)
    assert sums["p_ordinal"].to_list() == pytest.approx([1.0] * sums.height)


def test_weighted_distributions_are_normalised(tmp_path):
    answers = "question_id,group,option,weight\n" + "".join(
        f"{q},{g},{o},{w}\n"
        for g in ("liberal", "conservative", "overall")
        for q, o, w in [("q1", "Good", 30), ("q1", "Poor", 10), ("q1", "Refused", 10), ("q2", "Smaller", 1)]
    )
    table = survey(tmp_path, answers=answers, form="distribution")
    assert cell(table, "q1", "liberal", "A", "p_ordinal") == pytest.approx(0.75)
    assert cell(table, "q1", "liberal", "B", "p_ordinal") == pytest.approx(0.0)
    assert cell(table, "q1", "overall", "A", "refusal_rate") == pytest.approx(0.2)
    assert cell(table, "q1", "overall", "A", "n_responses") is None


@pytest.mark.parametrize(
    ("questions", "answers", "message"),
    [
        (QUESTIONS.replace("ordinal,", "rank,"), RESPONSES, "questions.csv: column 'ordinal' is missing"),
        (
            QUESTIONS.replace("Fair,2,", "Fair,two,"),
            RESPONSES,
            "column 'ordinal' row 2: 'two' is not a number",
        ),
        (QUESTIONS.replace("Refused,,true", "Refused,,maybe"), RESPONSES, "column 'refusal' row 4: 'maybe'"),
        (
            QUESTIONS.replace("Smaller,1,no", "Smaller,2,no"),
            RESPONSES,
            "question 'q2' needs at least two options",
        ),
        ("question_id,question,option,ordinal\n", RESPONSES, "no rows (no questions)"),
        (QUESTIONS.replace(",Fair,2", ",,2"), RESPONSES, "column 'option' row 2 is empty (question 'q1')"),
        (
            QUESTIONS + "q1,Rate the economy,Good,4,false\n",
            RESPONSES,
            "row 7: question 'q1' lists option 'Good'",
        ),
        (QUESTIONS, RESPONSES.replace(",w,", ",weight,"), "answers.csv: column 'w' is missing"),
        (QUESTIONS, RESPONSES.replace("2.0,Good", "x,Good"), "column 'w' row 1: 'x' is not a number"),
        (QUESTIONS, RESPONSES.replace("2.0,Good", "-2,Good"), "column 'w' row 1: -2.0 is negative"),
        (
            QUESTIONS,
            RESPONSES.replace("Fair,Smaller", "Okay,Smaller"),
            "column 'q1' row 2: 'Okay' is not an option",
        ),
        (
            QUESTIONS,
            RESPONSES.replace("Poor,Smaller", "Poor,"),
            "group 'conservative' has no answers to question 'q2'",
        ),
        (
            QUESTIONS,
            RESPONSES.replace("1.5,Poor", "1.5,Refused"),
            "answered question 'q1' with refusals only",
        ),
        (QUESTIONS, RESPONSES.replace(",q2\n", ",q3\n"), "column 'q2' is missing"),
    ],
)
def test_survey_errors_name_file_column_and_row(tmp_path, questions, answers, message):
    with pytest.raises(SurveyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        survey(tmp_path, questions, answers)


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ("question_id,group,option\n", "column 'weight' is missing"),
        ("question_id,group,option,weight\nq9,liberal,Good,1\n", "row 1: unknown question 'q9'"),
        (
            "question_id,group,option,weight\nq1,liberal,Great,1\n",
            "row 1: 'Great' is not an option of question",
        ),
        (
            "question_id,group,option,weight\nq1,liberal,Good,1\n",
            "group 'conservative' has no answers to question 'q1'",
        ),
        ("question_id,group,option,weight\nq1,,Good,1\n", "column 'group' row 1 is empty"),
    ],
)
def test_distribution_form_errors(tmp_path, answers, message):
    with pytest.raises(SurveyError, match=message):
        survey(tmp_path, answers=answers, form="distribution")


def test_demo_surveys_read_in_both_forms():
    root = REPO / "resources" / "demo" / "survey"
    science = read_survey(
        root / "science-questions.csv",
        root / "science-answers.csv",
        form="distribution",
        groups=["liberal", "conservative"],
        survey="science",
    )
    economy = read_survey(
        root / "economy-questions.csv",
        root / "economy-responses.csv",
        form="responses",
        groups=["liberal", "conservative"],
        survey="economy",
        group_column="ideology",
    )
    for table in (science, economy):
        assert set(table["group"]) == {"liberal", "conservative", "overall"}
        assert table["topic"].null_count() == 0  # every demo question has topic categories
        sums = table.group_by("question_id", "group").agg(pl.col("p").sum())
        assert sums["p"].to_list() == pytest.approx([1.0] * sums.height)


# --- topic categories ------------------------------------------------------------------------

TOPICS = """question_id,question,option,ordinal,refusal,topic
q1,Rate the economy,Good,1,false, Economy ;Inequality;;Economy
q1,Rate the economy,Fair,2,false,
q1,Rate the economy,Poor,3,false,Inequality; Economy
q1,Rate the economy,Refused,,true,
q2,Smaller or bigger government?,Smaller,1,no,
q2,Smaller or bigger government?,Bigger,2,no,
"""


def test_topic_categories_are_split_stripped_and_given_once_per_question(tmp_path):
    q1, q2 = read_questions(write(tmp_path, "q.csv", TOPICS))
    # Split at ";", stripped, empty parts and repeats dropped; empty rows inherit; the same
    # categories in another order on a later row are the same categories.
    assert q1.topics == ("Economy", "Inequality") and q2.topics == ()
    assert read_questions(write(tmp_path, "q.csv", QUESTIONS))[0].topics == ()  # no column


def test_a_question_with_other_topics_on_a_later_row_is_an_error(tmp_path):
    questions = TOPICS.replace("Poor,3,false,Inequality; Economy", "Poor,3,false,Health")
    message = (
        r"column 'topic' row 3: question 'q1' has the topics \['Health'\] here but "
        r"\['Economy', 'Inequality'\] on row 1"
    )
    with pytest.raises(SurveyError, match=message):
        read_questions(write(tmp_path, "q.csv", questions))


def test_the_survey_table_carries_each_questions_topics(tmp_path):
    table = survey(tmp_path, questions=TOPICS)
    per_question = table.group_by("question_id").agg(pl.col("topic").unique()).sort("question_id")
    assert per_question.rows() == [("q1", ["Economy;Inequality"]), ("q2", [None])]
    assert question_topics(table).rows() == [("s", "q1", "Economy"), ("s", "q1", "Inequality")]
    without = survey(tmp_path)
    assert without["topic"].null_count() == without.height and question_topics(without).height == 0
    assert question_topics(without.drop("topic")).height == 0  # a table from before the column


# --- duplicated rows, unflagged refusals, weights that do not sum to 1 ----------------------

DISTRIBUTION = "question_id,group,option,weight\n" + "".join(
    f"q1,{g},Good,0.5\nq1,{g},Fair,0.3\nq1,{g},Poor,0.15\nq1,{g},Refused,0.05\nq2,{g},Smaller,0.4\nq2,{g},Bigger,0.6\n"
    for g in ("liberal", "conservative", "overall")
)


def distribution_survey(tmp_path: Path, answers: str = DISTRIBUTION, questions: str = QUESTIONS, **options):
    warnings: list[str] = []
    table = survey(tmp_path, questions, answers, form="distribution", warn=warnings.append, **options)
    return table, warnings


def test_a_repeated_distribution_row_is_an_error_naming_both_rows(tmp_path):
    # Summing the two rows would move liberal's share of Good from 0.5 / 0.95 to 1.0 / 1.45.
    answers = DISTRIBUTION + "q1,liberal,Good,0.5\n"
    message = (
        r"answers.csv: row 19: question 'q1', group 'liberal', option 'Good' is repeated \(first on row 1\)"
    )
    with pytest.raises(SurveyError, match=message):
        distribution_survey(tmp_path, answers)


def test_a_repeated_question_option_names_its_first_row(tmp_path):
    with pytest.raises(
        SurveyError, match=r"row 7: question 'q1' lists option 'Good' twice \(first on row 1\)"
    ):
        survey(tmp_path, QUESTIONS + "q1,Rate the economy,Good,4,false\n")


def test_a_clean_distribution_table_gives_no_warning(tmp_path):
    table, warnings = distribution_survey(tmp_path)
    assert warnings == []
    assert cell(table, "q1", "liberal", "A", "p_ordinal") == pytest.approx(0.5 / 0.95)


@pytest.mark.parametrize(
    ("option", "ordinal", "why"),
    [
        ("Refused", "4", "its text reads as a non-answer"),
        ("DK/Refused (VOL.)", "4", "its text reads as a non-answer"),
        ("Don\u2019t know", "4", "its text reads as a non-answer"),
        ("Mixed feelings", "99", "its ordinal 99 lies far outside the others (1–3"),
        ("No answer", "99", "text reads as a non-answer; its ordinal 99 lies far outside"),
    ],
)
def test_an_unflagged_refusal_is_named_in_a_warning(tmp_path, option, ordinal, why):
    questions = QUESTIONS.replace("Refused,,true", f"{option},{ordinal},false")
    answers = DISTRIBUTION.replace(",Refused,", f",{option},")
    _, warnings = distribution_survey(tmp_path, answers, questions)
    assert len(warnings) == 1, warnings
    assert f"questions.csv: question 'q1' option '{option}' looks like a refusal" in warnings[0]
    assert why in warnings[0] and "not flagged" in warnings[0]


def test_ordinary_options_and_flagged_refusals_give_no_refusal_warning(tmp_path):
    # Flagged refusals, a far-off code that is flagged, and a 0-100 scale are all fine.
    questions = QUESTIONS.replace("Refused,,true", "Refused,99,true") + "".join(
        f"q3,Thermometer,{v} degrees,{v},false\n" for v in (0, 25, 50, 75, 100)
    )
    answers = DISTRIBUTION + "".join(
        f"q3,{g},{v} degrees,0.2\n"
        for g in ("liberal", "conservative", "overall")
        for v in (0, 25, 50, 75, 100)
    )
    _, warnings = distribution_survey(tmp_path, answers, questions)
    assert warnings == []


def test_weights_far_from_one_are_named_with_question_and_group(tmp_path):
    answers = DISTRIBUTION.replace("q1,conservative,Good,0.5", "q1,conservative,Good,5.0")
    table, warnings = distribution_survey(tmp_path, answers)
    assert [warning.replace(str(tmp_path / "answers.csv"), "answers.csv") for warning in warnings] == [
        "answers.csv: question 'q1', group 'conservative': the weights sum to 5.5, not 1 (± 0.05); they "
        "are renormalised as they are — check for a typo (5.8 for 0.58) or a missing option"
    ]
    assert cell(table, "q1", "conservative", "A", "p") == pytest.approx(5.0 / 5.5)  # still renormalised


def test_rounded_percentages_and_rounded_shares_pass(tmp_path):
    percentages = (
        DISTRIBUTION.replace(",0.5\n", ",51\n").replace(",0.3\n", ",30\n").replace(",0.15\n", ",15\n")
    )
    percentages = percentages.replace(",0.05\n", ",5\n").replace(",0.4\n", ",39\n").replace(",0.6\n", ",60\n")
    assert distribution_survey(tmp_path, percentages)[1] == []  # sums 101 and 99: rounding
    shares = DISTRIBUTION.replace(",0.15\n", ",0.17\n")  # 1.02
    assert distribution_survey(tmp_path, shares)[1] == []
    typo = percentages.replace("q2,overall,Smaller,39", "q2,overall,Smaller,3.9")
    (warning,) = distribution_survey(tmp_path, typo)[1]
    assert "question 'q2', group 'overall': the weights sum to 63.9, not 100 (± 5)" in warning


def counts_table(sums: dict[str, int]) -> str:
    """A distribution table of respondent counts: per group, q1 splits its sum 50/30/15/5 %,
    q2 40/60 % (the same shares as DISTRIBUTION, so the normalised table is the same)."""
    rows = []
    for group, n in sums.items():
        rows += [f"q1,{group},{o},{n * w / 100:g}\n" for o, w in [("Good", 50), ("Fair", 30), ("Poor", 15)]]
        rows += [f"q1,{group},Refused,{n * 5 / 100:g}\n", f"q2,{group},Smaller,{n * 40 / 100:g}\n"]
        rows.append(f"q2,{group},Bigger,{n * 60 / 100:g}\n")
    return "question_id,group,option,weight\n" + "".join(rows)


def test_respondent_counts_are_read_with_one_line_and_normalised(tmp_path):
    answers = counts_table({"liberal": 120, "conservative": 400, "overall": 1774})
    table, warnings = distribution_survey(tmp_path, answers)
    assert warnings == [
        f"{tmp_path}/answers.csv: weights read as respondent counts (sums 120–1774 per question and "
        "group); normalised per question and group"
    ]
    shares, _ = distribution_survey(tmp_path)
    # The same distributions as from the shares (counts are shares times the group's size).
    assert_frame_equal(table.drop("weight"), shares.drop("weight"), check_exact=False, rel_tol=1e-12)
    assert cell(table, "q1", "overall", "A", "weight") == pytest.approx(887.0)


@pytest.mark.parametrize(
    ("sums", "off"),
    [
        # A sum of 100 may be a percentage: every pair is then off the scale 1 (and named).
        ({"liberal": 100, "conservative": 400, "overall": 1774}, 6),
        # A group of one respondent sums to 1, a share: the other two groups' pairs are named.
        ({"liberal": 120, "conservative": 1, "overall": 1774}, 4),
    ],
)
def test_counts_with_a_sum_near_100_or_below_the_count_minimum_warn_per_pair(tmp_path, sums, off):
    _, warnings = distribution_survey(tmp_path, counts_table(sums))
    assert len(warnings) == off, warnings
    assert all("the weights sum to" in warning and "not 1 (± 0.05)" in warning for warning in warnings)


def test_shares_with_one_pair_off_scale_are_not_read_as_counts(tmp_path):
    # Every other pair sums to 1: the one that sums to 5.5 is a typo, named, not a count.
    answers = DISTRIBUTION.replace("q2,liberal,Bigger,0.6", "q2,liberal,Bigger,5.1")
    _, warnings = distribution_survey(tmp_path, answers)
    (warning,) = warnings
    assert "question 'q2', group 'liberal': the weights sum to 5.5, not 1" in warning


def test_weight_warnings_are_capped(tmp_path):
    answers = DISTRIBUTION.replace(",0.5\n", ",5\n").replace(",0.4\n", ",4\n")
    answers += "".join(f"q1,g{i},Good,0.5\n" for i in range(12))
    groups = ["liberal", "conservative", *(f"g{i}" for i in range(12))]
    answers += "".join(f"q2,g{i},Bigger,0.5\n" for i in range(12))
    _, warnings = distribution_survey(tmp_path, answers, groups=groups)
    assert len(warnings) == 11 and warnings[-1].startswith(
        f"{tmp_path}/answers.csv: 20 more (question, group)"
    )


def test_groups_compared_only_get_distributions_like_the_steered_ones(tmp_path):
    responses = RESPONSES.replace("r5,,1.0", "r5,moderate,1.0")
    table = survey(tmp_path, answers=responses, groups=["liberal", "conservative", "moderate"])
    assert set(table["group"]) == {"liberal", "conservative", "moderate", "overall"}
    assert cell(table, "q1", "moderate", "B", "p_ordinal") == pytest.approx(1.0)
    with pytest.raises(SurveyError, match="group 'moderate' has no answers to question 'q1'"):
        survey(tmp_path, groups=["liberal", "conservative", "moderate"])
