"""Survey input for positional (opinion) alignment: questions and human answers per group.

Inputs (CSV, parquet or JSON lines; read, never modified):

* **questions**: one row per answer option, in the order the options are shown, with the
  columns ``question_id``, ``question`` (the same text on every row of a question),
  ``option`` (its text), ``ordinal`` (a number; required for every option that is not a
  refusal) and, optionally, ``refusal`` (true/false, 1/0, yes/no; default false) and
  ``topic``: the question's topic categories, separated by ``;`` ("Economy; Inequality"),
  which consistency compares the model's best-represented group over (as OpinionQA's
  coarse topics; a question may have several). Give them on the question's first row or
  repeat them; rows that leave ``topic`` empty inherit it, rows that give other categories
  are an error. Categories are names: the same name in two surveys is one category.
  Options get the letters A, B, C, ... in row order; refusal options ("Refused", "Don't
  know") keep their letter but are left out of the opinion distribution.
* **answers**, in one of two forms:

  - ``distribution``: ``question_id``, ``group``, ``option``, ``weight``: the (weighted)
    share of the group that chose the option, as shares (summing to 1 per question and
    group), percentages (summing to 100) or weighted respondent counts (as survey crosstabs
    are often published), normalised per question and group. It must
    hold the group ``overall`` (everyone) as well as every compared group, and one row per
    (question, group, option) at most (a repeated row is an error, not summed).
  - ``responses``: one row per respondent, a group column, a survey-weight column and one
    column per question id holding the chosen option's text (empty: not asked). Weights are
    summed per question, group and option; ``overall`` is every respondent with an answer,
    whatever their group.

Human distributions are over the ordinal options (refusals left out) and the refusal rate
is the refusal weight over the total weight. The survey table repeats each question's topic
categories on its rows (``topic``, joined by ``;``, null without any). Every problem is a :class:`SurveyError`
naming the file, column and row (1-based data rows; a CSV header is not a row).

Warnings (the survey is usable, but probably not as meant; :func:`refusal_warnings` and
:func:`weight_sum_warnings`):

* an option not flagged as a refusal whose text reads as one ("Refused", "Don't know",
  "DK/Refused (VOL.)", "No answer", "Not sure", ...; the whole text, after dropping a
  parenthesis, must consist of such phrases), or whose ordinal lies far outside the
  others (:func:`ordinal_outliers`; e.g. Pew's codes 98/99 after the scale 1–4): scored
  as an opinion, it stretches the normaliser ``max − min ordinal``;
* in the ``distribution`` form, a (question, group) whose weights sum to more than
  :data:`WEIGHT_SUM_TOLERANCE` (5 %) away from the table's scale (1, or 100 when the
  median sum is near 100): rounding published percentages to whole points moves a sum
  by at most 0.5 point per option, so 5 % tolerates rounding for up to 10 options while
  a typo such as 5.8 for 0.58 stands out. A table whose (question, group) sums all exceed
  :data:`COUNT_SUM_MINIMUM` (1.5) with none near 100 holds respondent counts: it has no
  scale to miss, and one line says it was read so (:func:`weight_sum_warnings`).
"""

from __future__ import annotations

import itertools
import re
import statistics
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from affalign.io import TableError, read_table

OVERALL = "overall"
FORMS = ("distribution", "responses")
LETTERS = string.ascii_uppercase
QUESTION_COLUMNS = ("question_id", "question", "option", "ordinal")
TOPIC_COLUMN = "topic"
TOPIC_SEPARATOR = ";"
DISTRIBUTION_COLUMNS = ("question_id", "group", "option", "weight")
WEIGHT_SUM_TOLERANCE = 0.05
# Shares off by a typo still have most sums near 1: only a table whose every sum exceeds
# this (and none is near 100) is read as respondent counts.
COUNT_SUM_MINIMUM = 1.5
MAX_WEIGHT_WARNINGS = 10
OUTLIER_GAP_FACTOR = 5.0
# Whole option texts (lower case, parentheses dropped, split at "/", ",", ";", " or ") that
# are non-answers rather than positions on the scale.
REFUSAL_PHRASES = frozenset(
    {
        "refused", "refuse", "refusal", "don't know", "dont know", "do not know", "dk",
        "no answer", "not sure", "unsure", "prefer not to say", "prefer not to answer",
        "decline to answer", "declined to answer", "declined", "skipped", "no response",
        "n/a", "na", "not applicable", "no opinion", "can't say", "cannot say", "dk/ref",
        "ref", "not asked", "missing",
    }
)  # fmt: skip
TRUE_WORDS = {"true", "1", "yes", "y", "t"}
FALSE_WORDS = {"false", "0", "no", "n", "f", ""}

SURVEY_SCHEMA = {
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
    "topic": pl.String,
}
TOPICS_SCHEMA = {"survey": pl.String, "question_id": pl.String, "topic": pl.String}


class SurveyError(TableError):
    """Survey input that cannot be used as it is (a data error: one line, no traceback)."""


@dataclass(frozen=True)
class Question:
    """One multiple-choice question: options in display order, their ordinals and refusal flags.

    ``ordinals`` holds ``None`` for refusal options; ``topics`` are its topic categories in
    the order given (none when the questions table has no ``topic`` column).
    """

    id: str
    text: str
    options: tuple[str, ...]
    ordinals: tuple[float | None, ...]
    refusal: tuple[bool, ...]
    topics: tuple[str, ...] = ()

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


def parse_topics(value: str | None) -> tuple[str, ...]:
    """Topic categories from one ``topic`` cell: split at ``;``, stripped, empty parts and
    repeats dropped, in the order given."""
    parts = (part.strip() for part in (value or "").split(TOPIC_SEPARATOR))
    return tuple(dict.fromkeys(part for part in parts if part))


def parse_questions(frame: pl.DataFrame, path: str | Path = "questions") -> list[Question]:
    """Questions from a questions table (all columns text), in order of first appearance."""
    _require(path, frame, QUESTION_COLUMNS)
    if frame.height == 0:
        raise SurveyError(f"{path}: the table has no rows (no questions)")
    has_refusal = "refusal" in frame.columns
    has_topic = TOPIC_COLUMN in frame.columns
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
        entry = collected.setdefault(
            qid, {"text": text, "options": [], "ordinals": [], "refusal": [], "rows": [], "topics": None}
        )
        if entry["text"] != text:
            raise SurveyError(f"{path}: row {row}: question {qid!r} has another text than on its first row")
        topics = parse_topics(record[TOPIC_COLUMN]) if has_topic else ()
        if topics and entry["topics"] is None:
            entry["topics"] = (topics, row)
        elif topics and set(topics) != set(entry["topics"][0]):
            first_topics, first = entry["topics"]
            raise SurveyError(
                f"{path}: column {TOPIC_COLUMN!r} row {row}: question {qid!r} has the topics "
                f"{list(topics)} here but {list(first_topics)} on row {first}; give them once or "
                "repeat them"
            )
        if option in entry["options"]:
            first = entry["rows"][entry["options"].index(option)]
            raise SurveyError(
                f"{path}: row {row}: question {qid!r} lists option {option!r} twice (first on row {first})"
            )
        entry["rows"].append(row)
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
                topics=entry["topics"][0] if entry["topics"] else (),
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
    """Weights per question, group and option from a distribution-form table.

    Each (question, group, option) may appear on one row only: a repeated row is an error
    naming both rows (summing them would silently change the group's shares). Returns
    ``question_id``, ``group``, ``option``, ``weight``, ``n_responses`` (null).
    """
    _require(path, frame, DISTRIBUTION_COLUMNS)
    by_id = {q.id: q for q in questions}
    index = _option_index(by_id)
    rows = []
    first_row: dict[tuple[str, str, str], int] = {}
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
        key = (qid, group, option)
        if key in first_row:
            raise SurveyError(
                f"{path}: row {row}: question {qid!r}, group {group!r}, option {option!r} is "
                f"repeated (first on row {first_row[key]}); give each (question, group, option) "
                "one row"
            )
        first_row[key] = row
        rows.append((qid, group, option, weight))
    schema = {"question_id": pl.String, "group": pl.String, "option": pl.String, "weight": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row").with_columns(
        pl.lit(None, dtype=pl.Int64).alias("n_responses")
    )


def looks_like_refusal(option: str) -> bool:
    """Whether an option's whole text is a non-answer ("Refused", "DK/Refused (VOL.)", ...)."""
    words = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", option.lower().replace("\u2019", "'"))
    words = " ".join(words.replace("n/a", "na").split()).strip(" .!?:-*")
    if not words:
        return False
    parts = [part.strip(" .!?:-*") for part in re.split(r"[/,;]| or | and ", words)]
    parts = [part for part in parts if part]
    return bool(parts) and all(part in REFUSAL_PHRASES for part in parts)


def ordinal_outliers(ordinals: Sequence[float]) -> list[int]:
    """Positions of ordinals that lie far outside the others of a question (likely codes).

    Sort the distinct values and split them at the largest gap between neighbours. The
    smaller side (one or two values, strictly fewer than the other side) is an outlier when
    that gap exceeds :data:`OUTLIER_GAP_FACTOR` (5) times the mean spacing of the larger
    side: 1, 2, 3, 4, 99 flags 99; 1, 2, 3, 4, 98, 99 flags 98 and 99; −9, 1, 2, 3 flags −9;
    0, 25, 50, 75, 100 and 1, 2, 4 flag nothing. With only two distinct values a value of
    at least 97 is an outlier when the other is at most 10 (Pew's 99 after a 1).
    """
    values = sorted(set(float(v) for v in ordinals))
    outside: set[float] = set()
    if len(values) == 2:
        low, high = values
        if high >= 97 and low <= 10:
            outside = {high}
    elif len(values) >= 3:
        gaps = [b - a for a, b in itertools.pairwise(values)]
        split = max(range(len(gaps)), key=lambda i: gaps[i]) + 1
        below, above = values[:split], values[split:]
        inside, candidates = (below, above) if len(above) < len(below) else (above, below)
        if len(candidates) <= 2 and len(candidates) < len(inside) and len(inside) >= 2:
            spacing = (inside[-1] - inside[0]) / (len(inside) - 1)
            if gaps[split - 1] > OUTLIER_GAP_FACTOR * spacing:
                outside = set(candidates)
    return [i for i, value in enumerate(ordinals) if float(value) in outside]


def refusal_warnings(questions: Sequence[Question], path: str | Path = "questions") -> list[str]:
    """One warning per option that looks like a refusal but is not flagged as one."""
    warnings = []
    for question in questions:
        scored = [i for i, refusal in enumerate(question.refusal) if not refusal]
        ordinals = [float(question.ordinals[i]) for i in scored]
        far = {scored[i] for i in ordinal_outliers(ordinals)}
        others = [o for i, o in zip(scored, ordinals, strict=True) if i not in far]
        for i in scored:
            reasons = []
            if looks_like_refusal(question.options[i]):
                reasons.append("its text reads as a non-answer")
            if i in far:
                reasons.append(
                    f"its ordinal {question.ordinals[i]:g} lies far outside the others "
                    f"({min(others):g}–{max(others):g}; survey codes such as Pew's 98/99 mean "
                    '"Don\'t know"/"Refused")'
                )
            if reasons:
                warnings.append(
                    f"{path}: question {question.id!r} option {question.options[i]!r} looks like a "
                    f"refusal ({'; '.join(reasons)}) but is not flagged as one: it is scored as an "
                    "opinion and stretches the normaliser (max − min ordinal); set refusal to true "
                    "if it is one"
                )
    return warnings


def weight_sum_warnings(
    weights: pl.DataFrame, groups: Sequence[str], path: str | Path = "answers"
) -> list[str]:
    """Warnings for distribution-form (question, group) weights far from summing to the scale.

    Counts: when every (question, group) sum exceeds :data:`COUNT_SUM_MINIMUM` and none lies
    within :data:`WEIGHT_SUM_TOLERANCE` of 100, the weights are respondent counts (a crosstab
    of weighted counts); they have no common sum, so one line says they were read as counts,
    with the range of the sums, and no pair warns. Otherwise the scale is 100 when the median
    sum over the table's pairs lies within 5 % of 100 (percentages), else 1 (shares). A pair
    warns when its sum is more than :data:`WEIGHT_SUM_TOLERANCE` × scale away; at most
    :data:`MAX_WEIGHT_WARNINGS` are named, then one line counts the rest. Only ``groups``
    are looked at (other rows are unused).
    """
    sums = (
        weights.filter(pl.col("group").is_in(list(groups)))
        .group_by(["question_id", "group"], maintain_order=True)
        .agg(pl.col("weight").sum())
    )
    if sums.height == 0:
        return []
    totals = sums["weight"].to_list()
    if all(_reads_as_counts(total) for total in totals):
        return [
            f"{path}: weights read as respondent counts (sums {_sum_text(min(totals))}–"
            f"{_sum_text(max(totals))} per question and group); normalised per question and group"
        ]
    median = statistics.median(totals)
    scale = 100.0 if _near_percent(median) else 1.0
    off = [
        (qid, group, total)
        for qid, group, total in sums.iter_rows()
        if abs(total - scale) > WEIGHT_SUM_TOLERANCE * scale
    ]
    warnings = [
        f"{path}: question {qid!r}, group {group!r}: the weights sum to {total:.4g}, not {scale:g} "
        f"(± {WEIGHT_SUM_TOLERANCE * scale:g}); they are renormalised as they are — check for a "
        "typo (5.8 for 0.58) or a missing option"
        for qid, group, total in off[:MAX_WEIGHT_WARNINGS]
    ]
    if len(off) > MAX_WEIGHT_WARNINGS:
        warnings.append(
            f"{path}: {len(off) - MAX_WEIGHT_WARNINGS} more (question, group) distributions do not "
            f"sum to {scale:g} (± {WEIGHT_SUM_TOLERANCE * scale:g})"
        )
    return warnings


def _near_percent(total: float) -> bool:
    """Whether a sum lies within :data:`WEIGHT_SUM_TOLERANCE` of 100 (a percentage scale)."""
    return abs(total - 100.0) <= WEIGHT_SUM_TOLERANCE * 100.0


def _reads_as_counts(total: float) -> bool:
    """Whether a (question, group) sum fits a count: above any share, and not a percentage."""
    return total > COUNT_SUM_MINIMUM and not _near_percent(total)


def _sum_text(total: float) -> str:
    """A weight sum for a message: four significant digits, whole numbers from 10,000 on."""
    return f"{total:.0f}" if total >= 1e4 else f"{total:.4g}"


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
        topic = TOPIC_SEPARATOR.join(question.topics) or None
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
                        (count or 0) if counted else None, topic,
                    )
                )  # fmt: skip
    return pl.DataFrame(rows, schema=SURVEY_SCHEMA, orient="row")


def question_topics(survey_table: pl.DataFrame) -> pl.DataFrame:
    """One row per (survey, question, topic category) of survey tables (:data:`TOPICS_SCHEMA`).

    A question with several categories has a row for each; one without any has none. A
    survey table without the ``topic`` column (written before it existed) has no categories.
    """
    if TOPIC_COLUMN not in survey_table.columns:
        return pl.DataFrame(schema=TOPICS_SCHEMA)
    rows = {
        (survey, qid, topic)
        for survey, qid, value in survey_table.select("survey", "question_id", TOPIC_COLUMN).iter_rows()
        for topic in parse_topics(value)
    }
    return pl.DataFrame(sorted(rows), schema=TOPICS_SCHEMA, orient="row")


def read_survey(
    questions_path: str | Path,
    answers_path: str | Path,
    *,
    form: str,
    groups: Sequence[str],
    survey: str,
    group_column: str = "group",
    weight_column: str = "weight",
    warn: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """Read and check one survey topic and return its human distributions (see
    :func:`human_distributions`).

    ``groups`` are every compared group (steered towards or not; ``overall`` is added).
    Each warning (see the module docstring) is passed to ``warn`` when given.
    """
    if form not in FORMS:
        raise SurveyError(f"{answers_path}: unknown answers form {form!r}; use one of {FORMS}")
    questions = read_questions(questions_path)
    answers = _read(answers_path)
    warnings = refusal_warnings(questions, questions_path)
    if form == "distribution":
        weights = weights_from_distribution(answers, questions, answers_path)
        warnings += weight_sum_warnings(weights, [*groups, OVERALL], answers_path)
    else:
        weights = weights_from_responses(answers, questions, answers_path, group_column, weight_column)
    table = human_distributions(weights, questions, groups, survey, str(answers_path))
    for warning in warnings if warn is not None else []:
        warn(warning)
    return table
