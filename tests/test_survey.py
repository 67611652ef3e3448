"""Survey input: questions, answers in both forms, and the errors users see."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import REPO

from affalign.opinions.survey import SurveyError, read_questions, read_survey

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
        sums = table.group_by("question_id", "group").agg(pl.col("p").sum())
        assert sums["p"].to_list() == pytest.approx([1.0] * sums.height)
