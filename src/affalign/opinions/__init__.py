"""The opinions stage: OpinionQA-style positional alignment from survey answers.

Reads a survey's questions and answers (``opinions.surveys`` in the config) and each
model's service; writes ``results/opinions/survey/{survey}.parquet`` (rule
``survey_table``), one shard per model × survey × context
(``results/opinions/{model}/{survey}/{context}.parquet``, rule ``opinion_shard``) and
the joined tables under ``results/opinions/`` (rule ``opinion_tables``), all in
``workflow/rules/opinions.smk``.

* :mod:`~affalign.opinions.survey` — reading and checking survey tables;
* :mod:`~affalign.opinions.positional` — prompts, answer distributions, W1 alignment;
* :mod:`~affalign.opinions.resampling` — question resamples, the slope, consistency
  (intervals, the sign-flip test and Holm/BH are :mod:`affalign.stats`);
* :mod:`~affalign.opinions.comparisons` — representativeness, baselines, steerability
  (best of three, slope, differential) and consistency, with intervals;
* :mod:`~affalign.opinions.client` — letter log-probabilities through the service;
* :mod:`~affalign.opinions.tables` — the stage's file edges;
* :mod:`~affalign.opinions.settings` — what a shard and a survey table depend on, from the config.
"""

from affalign.opinions.client import (
    ANCHOR,
    Scoring,
    answer_logprobs,
    detect_endpoint_logprobs,
    write_logprob_support,
)
from affalign.opinions.client import payload as logprob_request
from affalign.opinions.comparisons import InferenceSettings
from affalign.opinions.positional import CLAMPED_LOGPROB, context_slug, parse_context_slug
from affalign.opinions.settings import OpinionSettings, survey_settings
from affalign.opinions.survey import SurveyError, read_questions, read_survey
from affalign.opinions.tables import run_opinion_tables, write_survey_table

__all__ = [
    "ANCHOR",
    "CLAMPED_LOGPROB",
    "InferenceSettings",
    "OpinionSettings",
    "Scoring",
    "SurveyError",
    "answer_logprobs",
    "context_slug",
    "detect_endpoint_logprobs",
    "logprob_request",
    "parse_context_slug",
    "read_questions",
    "read_survey",
    "run_opinion_tables",
    "survey_settings",
    "write_logprob_support",
    "write_survey_table",
]
