"""The classify stage: emotion and moral-foundation labels for every post.

Reads generation shards (``results/generated/...``) or a human posts table
(``results/human/{issue}/posts.parquet``); writes one affect table per input under
``results/classify/{classifier}/`` with ``p_<label>`` scores and ``y_<label>`` flags
(:mod:`~affalign.classify.labels`). Rules ``classify_generated`` and ``classify_human``
(``workflow/rules/classify.smk``) drive :func:`~affalign.classify.run.classify_files`.

* :mod:`~affalign.classify.lexicon` — lexicon classifiers (NRC, MFD 2.0) from their wheels;
* :mod:`~affalign.classify.transformer` — batched transformer classifiers (GPU or CPU);
* :mod:`~affalign.classify.text` — the text normalisation each kind expects;
* :mod:`~affalign.classify.llm` — a served model as the judge (``type: llm``), one
  constrained request per post (or, ``method: logprobs``, a yes/no probability per post and
  label) through the judge's service; its prompt template:
  :mod:`~affalign.classify.template`;
* :mod:`~affalign.classify.settings` — what a classifier's affect files depend on, from the config.
"""

from affalign.classify.labels import NONE_LABEL, label_column, score_column
from affalign.classify.lexicon import LexiconError
from affalign.classify.llm import Judge, check_endpoint_judge
from affalign.classify.settings import (
    classifier_labels,
    classifier_spec,
    llm_classifier_settings,
    requests_per_post,
)
from affalign.classify.template import PromptTemplateError, check_template, render_prompt

__all__ = [
    "NONE_LABEL",
    "Judge",
    "LexiconError",
    "PromptTemplateError",
    "check_endpoint_judge",
    "check_template",
    "classifier_labels",
    "classifier_spec",
    "label_column",
    "llm_classifier_settings",
    "render_prompt",
    "requests_per_post",
    "score_column",
]
