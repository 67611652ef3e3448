"""The opinions stage's file edges: survey tables in, opinion tables out (with provenance).

Outputs (see the ``Snakefile`` header): the human distributions per survey topic; per
question alignment; representativeness per model × context × group; human baselines;
steerability; refusal rates. Parquet files carry their provenance; CSVs are for reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from affalign.io import read_provenance, write_csv, write_table
from affalign.opinions import positional as opinions
from affalign.opinions.survey import read_survey


def write_survey_table(
    *,
    questions: str | Path,
    answers: str | Path,
    settings: Mapping[str, Any],
    survey: str,
    output: str | Path,
) -> pl.DataFrame:
    """Read, check and aggregate one survey topic's answers and write its distributions."""
    table = read_survey(
        questions,
        answers,
        form=settings["form"],
        groups=list(settings["groups"]),
        survey=survey,
        group_column=settings["group_column"],
        weight_column=settings["weight_column"],
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
    *, shards: Sequence[str | Path], surveys: Sequence[str | Path], outputs: Mapping[str, str]
) -> None:
    """Join every opinion shard with the survey distributions and write the tables."""
    model = pl.concat([pl.read_parquet(path) for path in shards])
    human = pl.concat([pl.read_parquet(path) for path in surveys])
    alignment = opinions.question_alignment(model, human)
    table = opinions.representativeness(alignment)
    results = {
        "alignment": alignment,
        "representativeness": table,
        "baselines": opinions.human_baselines(human),
        "steerability": opinions.steerability(table),
        "refusals": opinions.refusal_rates(model, human),
    }
    scoring = {read_provenance(path).get("scoring", {}).get("mode") for path in shards}
    provenance = {
        "stage": "opinions",
        "metric": "1 - W1(model, group) / (max ordinal - min ordinal), mean over questions",
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
