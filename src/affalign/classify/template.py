"""The prompt template of an LLM classifier (``classifiers.<c>.prompt``), filled by plain
replacement. Light on purpose: the config checks read it before any job.

Each method has its own placeholders: ``structured`` (one request per post) ``{labels}``
(one ``- label: definition`` line per label) and ``{post}``; ``logprobs`` (one yes/no
question per post and label) ``{label}``, ``{definition}`` and ``{post}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LABELS_PLACEHOLDER = "{labels}"
POST_PLACEHOLDER = "{post}"
LABEL_PLACEHOLDER = "{label}"
DEFINITION_PLACEHOLDER = "{definition}"
# The placeholders a template of each method (classifiers.<c>.method) must hold.
PLACEHOLDERS = {
    "structured": (LABELS_PLACEHOLDER, POST_PLACEHOLDER),
    "logprobs": (LABEL_PLACEHOLDER, DEFINITION_PLACEHOLDER, POST_PLACEHOLDER),
}
_PROMPT_FIELDS = re.compile(r"\{(labels|post)\}")
_QUESTION_FIELDS = re.compile(r"\{(label|definition|post)\}")


class PromptTemplateError(ValueError):
    """A prompt template without its placeholders."""


def check_template(text: str, where: str = "the prompt template", method: str = "structured") -> None:
    """Raise :class:`PromptTemplateError` unless ``text`` holds every placeholder that
    ``method`` fills."""
    if method not in PLACEHOLDERS:
        raise ValueError(f"unknown classification method {method!r}; use one of {sorted(PLACEHOLDERS)}")
    missing = [p for p in PLACEHOLDERS[method] if p not in text]
    if missing:
        raise PromptTemplateError(f"{where} lacks {' and '.join(missing)} (method {method})")


def render_prompt(template: str, labels: Mapping[str, str], post: str | None) -> str:
    """The template with one ``- label: definition`` line per label and the post, replaced
    in one pass, so that a placeholder written in a definition or a post stays text."""
    lines = "\n".join(f"- {label}: {definition}" for label, definition in labels.items())
    values = {"labels": lines, "post": post or ""}
    return _PROMPT_FIELDS.sub(lambda match: values[match.group(1)], template)


def render_question(template: str, label: str, definition: str, post: str | None) -> str:
    """The yes/no question of one label about one post (method ``logprobs``): ``{label}``,
    ``{definition}`` and ``{post}`` replaced in one pass, so that a placeholder written in a
    definition or a post stays text."""
    values = {"label": label, "definition": definition, "post": post or ""}
    return _QUESTION_FIELDS.sub(lambda match: values[match.group(1)], template)
