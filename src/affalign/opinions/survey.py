"""Survey input for positional (opinion) alignment: questions and human answers per group.

Inputs (CSV, parquet or JSON lines; read, never modified):

* **questions**: one row per answer option, in the order the options are shown, with the
  columns ``question_id``, ``question`` (the same text on every row of a question),
  ``option`` (its text), ``ordinal`` (a number; required for every option that is not a
  refusal) and, optionally, ``refusal`` (true/false, 1/0, yes/no; default false).
  Options get the letters A, B, C, ... in row order; refusal options ("Refused", "Don't
  know") keep their letter but are left out of the opinion distribution.
* **answers**, in one of two forms:

  - ``distribution``: ``question_id``, ``group``, ``option``, ``weight``: the (weighted)
    share of the group that chose the option, on any scale (normalised per question and
    group). It must hold the group ``overall`` (everyone) as well as every studied group.
  - ``responses``: one row per respondent, a group column, a survey-weight column and one
    column per question id holding the chosen option's text (empty: not asked). Weights are
    summed per question, group and option; ``overall`` is every respondent with an answer,
    whatever their group.

Human distributions are over the ordinal options (refusals left out) and the refusal rate
is the refusal weight over the total weight. Every problem is a :class:`SurveyError`
naming the file, column and row (1-based data rows; a CSV header is not a row).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from affalign.io import TableError, read_table

OVERALL = "overall"
FORMS = ("distribution", "responses")
LETTERS = string.ascii_uppercase
QUESTION_COLUMNS = ("question_id", "question", "option", "ordinal")
DISTRIBUTION_COLUMNS = ("question_id", "group", "option", "weight")
TRUE_WORDS = {"true", "1", "yes", "y", "t"}
FALSE_WORDS = {"false", "0", "no", "n", "f", ""}

HUMAN_SCHEMA = {
    "survey": pl.String,
    "question_id": pl.String,
    "group": pl.String,
    "letter": pl.String,
    "option": pl.String,
    "ordinal": pl.Float64,
    "is_refusal": pl.Boolean,
    "weight": pl.Float64,
    "p": pl.Float64,
    "p_ordinal": pl.Float64,
    "refusal_rate": pl.Float64,
    "n_responses": pl.Int64,
}


class SurveyError(ValueError):
    """Survey input that cannot be used as it is."""


@dataclass(frozen=True)
class Question:
    """One multiple-choice question: options in display order, their ordinals and refusal flags.

    ``ordinals`` holds ``None`` for refusal options.
    """

    id: str
    text: str
    options: tuple[str, ...]
    ordinals: tuple[float | None, ...]
    refusal: tuple[bool, ...]

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(LETTERS[: len(self.options)])


def _read(path: str | Path) -> pl.DataFrame:
    try:
        frame = read_table(path)
    except TableError as error:
        raise SurveyError(str(error)) from error
    # Text everywhere: types are checked per value below, with the row named.
    return frame.select(pl.all().cast(pl.String))


def _require(path: str | Path, frame: pl.DataFrame, columns: Sequence[str]) -> None:
    for column in columns:
        if column not in frame.columns:
            raise SurveyError(f"{path}: column {column!r} is missing; the table has {frame.columns}")


def _number(path: str | Path, column: str, row: int, value: str | None) -> float:
    try:
        number = float(value) if value is not None else float("nan")
    except ValueError:
        number = float("nan")
    if number != number or number in (float("inf"), float("-inf")):
        raise SurveyError(f"{path}: column {column!r} row {row}: {value!r} is not a number")
    return number


def _flag(path: str | Path, row: int, value: str | None) -> bool:
    word = (value or "").strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise SurveyError(f"{path}: column 'refusal' row {row}: {value!r} is not true/false")


def parse_questions(frame: pl.DataFrame, path: str | Path = "questions") -> list[Question]:
    """Questions from a questions table (all columns text), in order of first appearance."""
    _require(path, frame, QUESTION_COLUMNS)
    if frame.height == 0:
        raise SurveyError(f"{path}: the table has no rows (no questions)")
    has_refusal = "refusal" in frame.columns
    collected: dict[str, dict] = {}
    for row, record in enumerate(frame.iter_rows(named=True), start=1):
        qid = (record["question_id"] or "").strip()
        if not qid:
            raise SurveyError(f"{path}: column 'question_id' row {row} is empty")
        text, option = (record["question"] or "").strip(), (record["option"] or "").strip()
        if not text:
            raise SurveyError(f"{path}: column 'question' row {row} is empty (question {qid!r})")
        if not option:
            raise SurveyError(f"{path}: column 'option' row {row} is empty (question {qid!r})")
        refusal = _flag(path, row, record["refusal"]) if has_refusal else False
        ordinal = None
        if not refusal or (record["ordinal"] or "").strip():
            ordinal = _number(path, "ordinal", row, record["ordinal"])
        entry = collected.setdefault(qid, {"text": text, "options": [], "ordinals": [], "refusal": []})
        if entry["text"] != text:
            raise SurveyError(f"{path}: row {row}: question {qid!r} has another text than on its first row")
        if option in entry["options"]:
            raise SurveyError(f"{path}: row {row}: question {qid!r} lists option {option!r} twice")
        entry["options"].append(option)
        entry["ordinals"].append(None if refusal else ordinal)
        entry["refusal"].append(refusal)
    questions = []
    for qid, entry in collected.items():
        ordinals = [o for o in entry["ordinals"] if o is not None]
        if len(ordinals) < 2 or len(set(ordinals)) < 2:
            raise SurveyError(
                f"{path}: question {qid!r} needs at least two options that are not refusals, with "
                f"different ordinal values (found {len(ordinals)})"
            )
        if len(entry["options"]) > len(LETTERS):
            raise SurveyError(f"{path}: question {qid!r} has more than {len(LETTERS)} options")
        questions.append(
            Question(
                id=qid,
                text=entry["text"],
                options=tuple(entry["options"]),
                ordinals=tuple(entry["ordinals"]),
                refusal=tuple(entry["refusal"]),
            )
        )
    return questions


def read_questions(path: str | Path) -> list[Question]:
    """Read and check a questions table."""
    return parse_questions(_read(path), path)


def _option_index(questions: Mapping[str, Question]) -> dict[tuple[str, str], int]:
    return {(q.id, option): i for q in questions.values() for i, option in enumerate(q.options)}


def weights_from_distribution(
    frame: pl.DataFrame, questions: Sequence[Question], path: str | Path = "answers"
) -> pl.DataFrame:
    """Summed weights per question, group and option from a distribution-form table.

    Returns ``question_id``, ``group``, ``option``, ``weight``, ``n_responses`` (null).
    """
    _require(path, frame, DISTRIBUTION_COLUMNS)
    by_id = {q.id: q for q in questions}
    index = _option_index(by_id)
    rows = []
    for row, record in enumerate(frame.iter_rows(named=True), start=1):
        qid, group = (record["question_id"] or "").strip(), (record["group"] or "").strip()
        option = (record["option"] or "").strip()
        if qid not in by_id:
            raise SurveyError(f"{path}: column 'question_id' row {row}: unknown question {qid!r}")
        if not group:
            raise SurveyError(f"{path}: column 'group' row {row} is empty")
        if (qid, option) not in index:
            raise SurveyError(
                f"{path}: column 'option' row {row}: {option!r} is not an option of question {qid!r} "
                f"{list(by_id[qid].options)}"
            )
        weight = _number(path, "weight", row, record["weight"])
        if weight < 0:
            raise SurveyError(f"{path}: column 'weight' row {row}: {weight} is negative")
        rows.append((qid, group, option, weight))
    schema = {"question_id": pl.String, "group": pl.String, "option": pl.String, "weight": pl.Float64}
    weights = pl.DataFrame(rows, schema=schema, orient="row")
    return (
        weights.group_by(["question_id", "group", "option"], maintain_order=True)
        .agg(pl.col("weight").sum())
        .with_columns(pl.lit(None, dtype=pl.Int64).alias("n_responses"))
    )


def weights_from_responses(
    frame: pl.DataFrame,
    questions: Sequence[Question],
    path: str | Path = "answers",
    group_column: str = "group",
    weight_column: str = "weight",
) -> pl.DataFrame:
    """Summed survey weights per question, group and option from one row per respondent.

    Every respondent with an answer also counts for ``overall``. Returns ``question_id``,
    ``group``, ``option``, ``weight``, ``n_responses`` (respondents).
    """
    _require(path, frame, [group_column, weight_column, *(q.id for q in questions)])
    weights = []
    for row, value in enumerate(frame[weight_column].to_list(), start=1):
        weight = _number(path, weight_column, row, value)
        if weight < 0:
            raise SurveyError(f"{path}: column {weight_column!r} row {row}: {weight} is negative")
        weights.append(weight)
    groups = [(g or "").strip() for g in frame[group_column].to_list()]
    parts = []
    for question in questions:
        answers = [(a or "").strip() for a in frame[question.id].to_list()]
        for row, answer in enumerate(answers, start=1):
            if answer and answer not in question.options:
                raise SurveyError(
                    f"{path}: column {question.id!r} row {row}: {answer!r} is not an option of question "
                    f"{question.id!r} {list(question.options)}"
                )
        long = pl.DataFrame(
            {"group": groups, "option": answers, "weight": weights},
            schema={"group": pl.String, "option": pl.String, "weight": pl.Float64},
        ).filter(pl.col("option") != "")
        answered = pl.concat([long, long.with_columns(pl.lit(OVERALL).alias("group"))]).filter(
            pl.col("group") != ""
        )
        parts.append(
            answered.group_by(["group", "option"], maintain_order=True)
            .agg(pl.col("weight").sum(), pl.len().cast(pl.Int64).alias("n_responses"))
            .select(pl.lit(question.id).alias("question_id"), "group", "option", "weight", "n_responses")
        )
    return pl.concat(parts)


def human_distributions(
    weights: pl.DataFrame, questions: Sequence[Question], groups: Sequence[str], survey: str, source: str
) -> pl.DataFrame:
    """One row per (question, group, option) with shares over all options (``p``), over the
    ordinal options (``p_ordinal``, null for refusals) and the group's refusal rate.

    ``groups`` are the studied groups; ``overall`` is added. A group without answers to a
    question, or with refusals only, is an error naming ``source``.
    """
    wanted = [*groups, OVERALL]
    counted = weights["n_responses"].null_count() < weights.height
    rows = []
    columns = ["question_id", "group", "option", "weight", "n_responses"]
    lookup = {(q, g, o): (w, n) for q, g, o, w, n in weights.select(columns).iter_rows()}
    for question in questions:
        for group in wanted:
            cells = [lookup.get((question.id, group, option), (0.0, None)) for option in question.options]
            values = [cell[0] for cell in cells]
            total = sum(values)
            ordinal_total = sum(v for v, refusal in zip(values, question.refusal, strict=True) if not refusal)
            if total <= 0:
                raise SurveyError(f"{source}: group {group!r} has no answers to question {question.id!r}")
            if ordinal_total <= 0:
                raise SurveyError(
                    f"{source}: group {group!r} answered question {question.id!r} with refusals only"
                )
            refusal_rate = 1.0 - ordinal_total / total
            for i, (option, (value, count)) in enumerate(zip(question.options, cells, strict=True)):
                refusal = question.refusal[i]
                rows.append(
                    (
                        survey, question.id, group, LETTERS[i], option, question.ordinals[i], refusal,
                        value, value / total, None if refusal else value / ordinal_total, refusal_rate,
                        (count or 0) if counted else None,
                    )
                )  # fmt: skip
    return pl.DataFrame(rows, schema=HUMAN_SCHEMA, orient="row")


def read_survey(
    questions_path: str | Path,
    answers_path: str | Path,
    *,
    form: str,
    groups: Sequence[str],
    survey: str,
    group_column: str = "group",
    weight_column: str = "weight",
) -> pl.DataFrame:
    """Read and check one survey topic and return its human distributions (see
    :func:`human_distributions`)."""
    if form not in FORMS:
        raise SurveyError(f"{answers_path}: unknown answers form {form!r}; use one of {FORMS}")
    questions = read_questions(questions_path)
    answers = _read(answers_path)
    if form == "distribution":
        weights = weights_from_distribution(answers, questions, answers_path)
    else:
        weights = weights_from_responses(answers, questions, answers_path, group_column, weight_column)
    return human_distributions(weights, questions, groups, survey, str(answers_path))
