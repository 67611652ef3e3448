"""The opinions stage's file edges: survey tables in, opinion tables out (with provenance).

Outputs (see the ``Snakefile`` header): the human distributions per survey topic; per
question alignment; representativeness per model × context × group; human baselines;
steerability, its slope and differential steerability; consistency; refusal rates (see
:mod:`~affalign.opinions.comparisons`). Parquet files carry their provenance; CSVs are for
reading. Survey warnings, and why consistency is null when it is, go to the job's log and to
the console.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

import affalign.opinions.positional as opinions
from affalign.io import print_job_warning, read_provenance, write_csv, write_table
from affalign.opinions.comparisons import InferenceSettings, compare_opinions, consistency_warnings
from affalign.opinions.survey import question_topics, read_survey


def write_survey_table(
    *,
    questions: str | Path,
    answers: str | Path,
    settings: Mapping[str, Any],
    survey: str,
    output: str | Path,
) -> pl.DataFrame:
    """Read, check and aggregate one survey topic's answers and write its distributions.

    ``settings["groups"]`` are the groups steered towards, ``settings["compare_groups"]``
    those compared with only; the table holds both and ``overall``.
    """
    table = read_survey(
        questions,
        answers,
        form=settings["form"],
        groups=[*settings["groups"], *settings["compare_groups"]],
        survey=survey,
        group_column=settings["group_column"],
        weight_column=settings["weight_column"],
        warn=print_job_warning,
    )
    provenance = {
        "stage": "survey",
        "survey": survey,
        "questions_file": str(questions),
        "answers_file": str(answers),
        **dict(settings),
        "distribution": "weights summed per option; p over all options, p_ordinal over non-refusals",
    }
    write_table(table, output, provenance)
    print(f"[affalign] {survey}: {table['question_id'].n_unique()} questions -> {output}", flush=True)
    return table


def run_opinion_tables(
    *,
    shards: Sequence[str | Path],
    surveys: Sequence[str | Path],
    outputs: Mapping[str, str],
    inference: InferenceSettings,
) -> None:
    """Join every opinion shard with the survey distributions and write the tables.

    Consistency is computed over the questions' topic categories (the survey tables'
    ``topic``); when it is null, one line per reason goes to the log and the console.
    """
    model = pl.concat([pl.read_parquet(path) for path in shards])
    # Diagonal: a survey table written before the topic column existed has no topics.
    human = pl.concat([pl.read_parquet(path) for path in surveys], how="diagonal_relaxed")
    alignment = opinions.question_alignment(model, human)
    topics = question_topics(human)
    compared = compare_opinions(alignment, opinions.human_question_alignment(human), inference, topics)
    for warning in consistency_warnings(compared["consistency"]):
        print_job_warning(warning)
    results = {"alignment": alignment, **compared, "refusals": opinions.refusal_rates(model, human)}
    scoring = {read_provenance(path).get("scoring", {}).get("mode") for path in shards}
    provenance = {
        "stage": "opinions",
        "metric": "1 - W1(model, group) / (max ordinal - min ordinal), mean over questions",
        "intervals": "percentile, resampling questions with replacement (same resamples for every table)",
        "tests": "two-sided paired sign-flip permutation over questions (differential steerability); "
        "Holm and BH across all its tests",
        "consistency": "over the topic categories of the questions (questions table column 'topic'); "
        "null with fewer than two categories or groups",
        "topic_categories": sorted(topics["topic"].unique().to_list()),
        "bootstrap_replicates": inference.replicates,
        "confidence": inference.confidence,
        "permutations": inference.permutations,
        "seed": inference.seed,
        "scoring_modes": sorted(m for m in scoring if m),
        "n_shards": len(shards),
        "surveys": sorted(human["survey"].unique().to_list()),
        "models": sorted(model["model"].unique().to_list()),
    }
    for name, frame in results.items():
        write_table(frame, outputs[name], provenance)
        if f"{name}_csv" in outputs:
            write_csv(frame, outputs[f"{name}_csv"])
    print(f"[affalign] opinions: {len(shards)} shards, {alignment.height} question alignments", flush=True)
