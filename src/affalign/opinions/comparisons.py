"""Positional comparisons: the published opinion tables, every score with its question-level
interval, all from one computation (pure functions on polars frames, no I/O).

``R`` is representativeness: the mean over questions of ``1 − W1 / (max − min ordinal)``
(:mod:`~affalign.opinions.positional`). Intervals resample questions
(:mod:`~affalign.opinions.resampling`); one set of resamples serves every table and model,
so differences are paired and adding a model leaves the others' intervals unchanged.

* **representativeness** ``R(m, c, g)`` per model ``m``, context ``c`` and group ``g``
  (OpinionQA's ``R_G(m)``), for every compared group: steered towards or baseline-only.
* **human baselines**: each group against ``overall``; ``human (avg)`` is their mean and
  ``human (worst)`` their minimum, both recomputed in every resample (so the interval of the
  worst includes which group is worst).
* **steerability** (the paper's, best of three): per model and steered group ``g``,
  ``max_c R(m, c→g, g) − R(m, default, g)`` over the steering contexts ``c`` towards ``g``.
  The best context is chosen again in every resample, so the interval includes the choice.
  It measures whether *some* context naming ``g`` brings the model closer to ``g`` than no
  context: a context that brings the model closer to *every* group (a change of prompt
  format rather than of persona) counts as steering here.
* **steerability slope**: per model, the OLS slope without intercept of the best steered
  ``R`` on the default ``R`` over the steered groups (the paper's fit): ``Σ d·s / Σ d²``.
  Near 1: steering keeps each group's standing; above 1: it raises representativeness in
  proportion. Interval from the same resamples.
* **differential steerability**: per model, steering method ``k`` (qa, bio, portray) and
  steered group ``g``, ``R(m, k→g, g) − mean_h R(m, k→h, g)`` over the other steered groups
  ``h``: how much closer to ``g`` the model gets when steered towards ``g`` than when
  steered, with the same method, towards someone else. A format effect raises both terms
  alike and cancels. Interval from the resamples of the per-question differences; test:
  two-sided paired sign-flip permutation over questions (``p_value``), with Holm and
  Benjamini–Hochberg adjustments (``p_holm``, ``p_bh``) across one family: every
  differential test of the run (all models, methods and groups). Needs at least two groups
  steered towards with that method.
* **consistency** (Santurkar et al. 2023): per model and context, the fraction of topic
  categories on which the group the model represents best (highest ``R`` over the
  category's questions, ``overall`` aside) is the group it represents best over all its
  questions (``best_group``), as in OpinionQA's reference code (its coarse topics). The
  categories are the questions tables' ``topic`` column
  (:func:`~affalign.opinions.survey.question_topics`): a question with several categories
  counts in each, one without any counts in the overall best only, and a name shared by two
  surveys is one category (as a topic spans Pew waves). Ties agree when the two sets of best
  groups share a group. With fewer than two categories among the context's questions, or
  fewer than two compared groups, the value would be 1 by construction: it is null, and
  ``consistency_note`` says why (:func:`consistency_warnings` gives the log line).
  The paper computes it per demographic attribute (ideology, education, income) and
  averages; here all compared groups form one set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from affalign.io import derive_seed
from affalign.opinions.resampling import (
    best_groups,
    consistency,
    question_resamples,
    resampled_means,
    slope_through_origin,
)
from affalign.opinions.survey import OVERALL, TOPIC_COLUMN, TOPICS_SCHEMA
from affalign.stats import benjamini_hochberg, holm, percentile_interval, sign_flip_p_values

HUMAN_AVG = "human (avg)"
HUMAN_WORST = "human (worst)"
GROUP_VS_OVERALL = "group vs overall"
QUESTION_KEYS = ["survey", "question_id"]
CELL_KEYS = ["context", "method", "steered_group", "group"]

REPRESENTATIVENESS_SCHEMA = {
    "model": pl.String,
    "context": pl.String,
    "method": pl.String,
    "steered_group": pl.String,
    "group": pl.String,
    "representativeness": pl.Float64,
    "n_questions": pl.Int64,
    "representativeness_low": pl.Float64,
    "representativeness_high": pl.Float64,
}
BASELINE_SCHEMA = {
    "baseline": pl.String,
    "group": pl.String,
    "representativeness": pl.Float64,
    "n_questions": pl.Int64,
    "representativeness_low": pl.Float64,
    "representativeness_high": pl.Float64,
}
STEERABILITY_SCHEMA = {
    "model": pl.String,
    "group": pl.String,
    "default_representativeness": pl.Float64,
    "best_context": pl.String,
    "steered_representativeness": pl.Float64,
    "steerability": pl.Float64,
    "n_questions": pl.Int64,
    "steerability_low": pl.Float64,
    "steerability_high": pl.Float64,
}
SLOPE_SCHEMA = {
    "model": pl.String,
    "slope": pl.Float64,
    "slope_low": pl.Float64,
    "slope_high": pl.Float64,
    "n_groups": pl.Int64,
}
DIFFERENTIAL_SCHEMA = {
    "model": pl.String,
    "method": pl.String,
    "group": pl.String,
    "default_representativeness": pl.Float64,
    "towards_representativeness": pl.Float64,
    "away_representativeness": pl.Float64,
    "differential_steerability": pl.Float64,
    "differential_low": pl.Float64,
    "differential_high": pl.Float64,
    "p_value": pl.Float64,
    "p_holm": pl.Float64,
    "p_bh": pl.Float64,
    "n_questions": pl.Int64,
    "n_other_groups": pl.Int64,
}
CONSISTENCY_SCHEMA = {
    "model": pl.String,
    "context": pl.String,
    "method": pl.String,
    "steered_group": pl.String,
    "best_group": pl.String,
    "consistency": pl.Float64,
    "n_surveys": pl.Int64,
    "n_groups": pl.Int64,
    "n_topics": pl.Int64,
    "consistency_note": pl.String,
}


@dataclass(frozen=True)
class InferenceSettings:
    """Question resamples for the intervals, their confidence level, sign-flip permutations
    for the tests, and the study's global seed (every random draw derives from it)."""

    replicates: int = 1000
    confidence: float = 0.95
    permutations: int = 10000
    seed: int = 0

    @classmethod
    def from_config(cls, opinions: Mapping[str, Any], seed: int) -> InferenceSettings:
        return cls(
            replicates=int(opinions["bootstrap_replicates"]),
            confidence=float(opinions["confidence"]),
            permutations=int(opinions["permutations"]),
            seed=int(seed),
        )


def question_index(*frames: pl.DataFrame) -> pl.DataFrame:
    """Every (survey, question_id) in the frames, sorted, with its column number ``q``."""
    questions = pl.concat([frame.select(QUESTION_KEYS) for frame in frames]).unique().sort(QUESTION_KEYS)
    return questions.with_row_index("q")


def alignment_matrix(
    frame: pl.DataFrame, keys: list[str], questions: pl.DataFrame
) -> tuple[pl.DataFrame, np.ndarray]:
    """The cells of ``frame`` (its distinct ``keys``, sorted with nulls first) and their
    (cells × questions) alignments, NaN where a cell lacks a question."""
    cells = frame.select(keys).unique().sort(keys, nulls_last=False).with_row_index("cell")
    located = frame.join(cells, on=keys, how="left", nulls_equal=True).join(
        questions, on=QUESTION_KEYS, how="left"
    )
    values = np.full((cells.height, questions.height), np.nan)
    values[located["cell"].to_numpy(), located["q"].to_numpy()] = located["alignment"].to_numpy()
    return cells.drop("cell"), values


def row_means(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the mean of the finite values (NaN if none) and how many there are."""
    present = np.isfinite(values)
    counts = present.sum(axis=1)
    totals = np.where(present, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan), counts


def _frame(rows: list[tuple], schema: Mapping[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=dict(schema), orient="row")


@dataclass(frozen=True)
class _ModelCells:
    """One model's cells (context, method, steered group, group) with their alignments."""

    model: str
    cells: pl.DataFrame
    values: np.ndarray
    replicates: np.ndarray
    point: np.ndarray
    n_questions: np.ndarray

    def lookup(self) -> dict[tuple[str, str | None, str], int]:
        keys = self.cells.select("method", "steered_group", "group").iter_rows()
        return {key: i for i, key in enumerate(keys)}


def compare_opinions(
    alignment: pl.DataFrame,
    human_alignment: pl.DataFrame,
    settings: InferenceSettings,
    topics: pl.DataFrame | None = None,
) -> dict[str, pl.DataFrame]:
    """Every published opinion table (see the module docstring) from the per-question
    alignments of the models (:func:`~affalign.opinions.positional.question_alignment`) and
    of the groups with ``overall``
    (:func:`~affalign.opinions.positional.human_question_alignment`).

    ``topics`` holds the questions' topic categories, one row per (survey, question_id,
    topic) (:func:`~affalign.opinions.survey.question_topics`); without it consistency is
    null (see the module docstring)."""
    questions = question_index(alignment, human_alignment)
    categories = topic_masks(questions, pl.DataFrame(schema=TOPICS_SCHEMA) if topics is None else topics)
    counts = question_resamples(
        questions.height, settings.replicates, derive_seed(settings.seed, "opinions", "question-resamples")
    )
    parts: dict[str, list[pl.DataFrame]] = {
        "representativeness": [],
        "steerability": [],
        "steerability_slope": [],
        "differential_steerability": [],
        "consistency": [],
    }
    for model in sorted(alignment["model"].unique().to_list()):
        cells, values = alignment_matrix(alignment.filter(pl.col("model") == model), CELL_KEYS, questions)
        point, n_questions = row_means(values)
        data = _ModelCells(model, cells, values, resampled_means(values, counts), point, n_questions)
        parts["representativeness"].append(_representativeness(data, settings))
        steerability, slope = _steerability(data, settings)
        parts["steerability"].append(steerability)
        parts["steerability_slope"].append(slope)
        parts["differential_steerability"].append(_differential(data, counts, settings))
        parts["consistency"].append(_consistency(data, questions, categories))
    schemas = {
        "representativeness": REPRESENTATIVENESS_SCHEMA,
        "steerability": STEERABILITY_SCHEMA,
        "steerability_slope": SLOPE_SCHEMA,
        "differential_steerability": DIFFERENTIAL_SCHEMA,
        "consistency": CONSISTENCY_SCHEMA,
    }
    tables = {name: pl.concat([_frame([], schemas[name]), *frames]) for name, frames in parts.items()}
    tables["differential_steerability"] = _adjusted(tables["differential_steerability"])
    tables["baselines"] = human_baselines(human_alignment, questions, counts, settings.confidence)
    return tables


def _representativeness(data: _ModelCells, settings: InferenceSettings) -> pl.DataFrame:
    low, high = percentile_interval(data.replicates, settings.confidence)
    return data.cells.select(
        pl.lit(data.model).alias("model"),
        *CELL_KEYS,
        pl.Series("representativeness", data.point, dtype=pl.Float64),
        pl.Series("n_questions", data.n_questions, dtype=pl.Int64),
        pl.Series("representativeness_low", low, dtype=pl.Float64),
        pl.Series("representativeness_high", high, dtype=pl.Float64),
    )


def _steerability(data: _ModelCells, settings: InferenceSettings) -> tuple[pl.DataFrame, pl.DataFrame]:
    contexts = data.cells["context"].to_list()
    lookup = data.lookup()
    steered = sorted({g for (method, towards, g) in lookup if method != "default" and towards == g})
    rows, defaults, bests, default_replicates, best_replicates = [], [], [], [], []
    for group in steered:
        default = lookup.get(("default", None, group))
        options = [i for (m, towards, g), i in lookup.items() if m != "default" and towards == g == group]
        options = [i for i in options if np.isfinite(data.point[i])]
        if default is None or not np.isfinite(data.point[default]) or not options:
            continue
        best = min(options, key=lambda i: (-data.point[i], contexts[i]))
        # The best context is chosen again in each resample (fmax ignores NaN).
        replicate_best = np.fmax.reduce(data.replicates[options], axis=0)
        low, high = percentile_interval(replicate_best - data.replicates[default], settings.confidence)
        rows.append(
            (
                data.model, group, data.point[default], contexts[best], data.point[best],
                data.point[best] - data.point[default], int(data.n_questions[best]), low, high,
            )
        )  # fmt: skip
        defaults.append(data.point[default])
        bests.append(data.point[best])
        default_replicates.append(data.replicates[default])
        best_replicates.append(replicate_best)
    slope_rows = []
    if rows:
        slope = float(slope_through_origin(defaults, bests))
        replicate_slopes = slope_through_origin(np.array(default_replicates).T, np.array(best_replicates).T)
        low, high = percentile_interval(replicate_slopes, settings.confidence)
        slope_rows.append((data.model, slope, low, high, len(rows)))
    return _frame(rows, STEERABILITY_SCHEMA), _frame(slope_rows, SLOPE_SCHEMA)


def _differential(data: _ModelCells, counts: np.ndarray, settings: InferenceSettings) -> pl.DataFrame:
    lookup = data.lookup()
    methods = sorted({method for (method, _, _) in lookup if method != "default"})
    described, differences, n_other = [], [], []
    for method in methods:
        targets = sorted({towards for (m, towards, _) in lookup if m == method and towards is not None})
        for group in targets:
            towards = lookup.get((method, group, group))
            away = [
                lookup[(method, h, group)] for h in targets if (method, h, group) in lookup and h != group
            ]
            if towards is None or not away:
                continue
            away_values = data.values[away].mean(axis=0)
            differences.append(data.values[towards] - away_values)
            n_other.append(len(away))
            default = lookup.get(("default", None, group))
            described.append(
                (
                    data.model, method, group, np.nan if default is None else data.point[default],
                    data.point[towards], row_means(away_values[None, :])[0][0],
                )
            )  # fmt: skip
    if not described:
        return _frame([], DIFFERENTIAL_SCHEMA)
    matrix = np.array(differences)
    point, n_questions = row_means(matrix)
    low, high = percentile_interval(resampled_means(matrix, counts), settings.confidence)
    p_values = sign_flip_p_values(
        matrix, settings.permutations, derive_seed(settings.seed, "opinions", "sign-flip", data.model)
    )
    # p_holm and p_bh are filled in over the whole family (:func:`_adjusted`).
    rows = [
        (*row, point[i], low[i], high[i], p_values[i], np.nan, np.nan, int(n_questions[i]), n_away)
        for i, (row, n_away) in enumerate(zip(described, n_other, strict=True))
    ]
    return _frame(rows, DIFFERENTIAL_SCHEMA)


def _adjusted(differential: pl.DataFrame) -> pl.DataFrame:
    """The differential table with Holm and BH adjusted p-values across all its tests."""
    p_values = differential["p_value"].to_numpy().astype(float)
    return differential.with_columns(
        pl.Series("p_holm", holm(p_values), dtype=pl.Float64),
        pl.Series("p_bh", benjamini_hochberg(p_values), dtype=pl.Float64),
    )


def topic_masks(questions: pl.DataFrame, topics: pl.DataFrame) -> dict[str, np.ndarray]:
    """Per topic category (sorted by name), which columns of the question index belong to it.

    A question with several categories is in each mask; categories of questions outside the
    index are dropped.
    """
    located = topics.join(questions, on=QUESTION_KEYS, how="inner")
    masks: dict[str, np.ndarray] = {}
    for topic, q in located.select(TOPIC_COLUMN, "q").sort(TOPIC_COLUMN, "q").iter_rows():
        masks.setdefault(topic, np.zeros(questions.height, dtype=bool))[q] = True
    return masks


def _consistency(
    data: _ModelCells, questions: pl.DataFrame, categories: Mapping[str, np.ndarray]
) -> pl.DataFrame:
    topic_scores = {topic: row_means(data.values[:, mask])[0] for topic, mask in categories.items()}
    surveys = questions["survey"].to_numpy()
    groups = data.cells["group"].to_list()
    contexts = data.cells.select("context", "method", "steered_group").rows()
    rows = []
    for context in dict.fromkeys(contexts):
        members = [i for i, c in enumerate(contexts) if c == context and groups[i] != OVERALL]
        if not members:
            continue
        overall = {groups[i]: data.point[i] for i in members}
        by_topic = {topic: {groups[i]: scores[i] for i in members} for topic, scores in topic_scores.items()}
        used = [topic for topic, scores in by_topic.items() if best_groups(scores)]
        asked = np.isfinite(data.values[members]).any(axis=0)
        note = consistency_note(used, len(members), bool(categories))
        value = consistency(overall, [by_topic[topic] for topic in used]) if note is None else None
        rows.append(
            (
                data.model, *context, ", ".join(sorted(best_groups(overall))), value,
                len(set(surveys[asked])), len(members), len(used), note,
            )
        )  # fmt: skip
    return _frame(rows, CONSISTENCY_SCHEMA)


def consistency_note(topics: Sequence[str], n_groups: int, any_topics: bool) -> str | None:
    """Why a context's consistency is null, or ``None`` when it is computed.

    ``topics`` are the categories among the context's questions, ``n_groups`` the compared
    groups, ``any_topics`` whether any question of the run has a category. With one category
    or one group the best group agrees with itself: 1 by construction, not a measurement.
    """
    if n_groups < 2:
        return f"{n_groups} group compared; consistency needs at least two"
    if not any_topics:
        return (
            f"no topic categories: the questions tables have no {TOPIC_COLUMN!r} column (or it is "
            "empty); consistency needs at least two categories"
        )
    if len(topics) < 2:
        named = f" ({', '.join(repr(t) for t in topics)})" if topics else ""
        return (
            f"{len(topics)} topic categor{'y' if len(topics) == 1 else 'ies'}{named} among the "
            "context's questions; consistency needs at least two"
        )
    return None


def consistency_warnings(table: pl.DataFrame) -> list[str]:
    """One line per distinct reason the consistency table holds nulls, with how many rows."""
    notes = table.filter(pl.col("consistency_note").is_not_null())
    return [
        f"consistency is empty for {n} of {table.height} model × context rows: {note}"
        for note, n in notes.group_by("consistency_note", maintain_order=True).len().iter_rows()
    ]


def human_baselines(
    human_alignment: pl.DataFrame, questions: pl.DataFrame, counts: np.ndarray, confidence: float
) -> pl.DataFrame:
    """Each group against ``overall`` (mean alignment over questions), then ``human (avg)``
    (the mean over groups) and ``human (worst)`` (the minimum, naming its group), with
    question-resample intervals."""
    if human_alignment.height == 0:
        return _frame([], BASELINE_SCHEMA)
    cells, values = alignment_matrix(human_alignment, ["group"], questions)
    point, n_questions = row_means(values)
    replicates = resampled_means(values, counts)
    low, high = percentile_interval(replicates, confidence)
    groups = cells["group"].to_list()
    rows = [
        (GROUP_VS_OVERALL, g, point[i], int(n_questions[i]), low[i], high[i]) for i, g in enumerate(groups)
    ]
    average_low, average_high = percentile_interval(replicates.mean(axis=0), confidence)
    worst = int(np.argmin(point))
    worst_low, worst_high = percentile_interval(np.fmin.reduce(replicates, axis=0), confidence)
    rows += [
        (HUMAN_AVG, None, float(point.mean()), int(n_questions.max()), average_low, average_high),
        (HUMAN_WORST, groups[worst], point[worst], int(n_questions[worst]), worst_low, worst_high),
    ]
    return _frame(rows, BASELINE_SCHEMA)
