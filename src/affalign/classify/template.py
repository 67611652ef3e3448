"""The prompt template of an LLM classifier (``classifiers.<c>.prompt``): a text file with
``{labels}`` (one ``- label: definition`` line per label) and ``{post}``, filled by plain
replacement. Light on purpose: the config checks read it before any job."""

from __future__ import annotations

from collections.abc import Mapping

LABELS_PLACEHOLDER = "{labels}"
POST_PLACEHOLDER = "{post}"


class PromptTemplateError(ValueError):
    """A prompt template without its placeholders."""


def check_template(text: str, where: str = "the prompt template") -> None:
    missing = [p for p in (LABELS_PLACEHOLDER, POST_PLACEHOLDER) if p not in text]
    if missing:
        raise PromptTemplateError(f"{where} lacks {' and '.join(missing)}")


def render_prompt(template: str, labels: Mapping[str, str], post: str | None) -> str:
    """The template with one ``- label: definition`` line per label and the post (plain
    replacement: braces in a post or a definition are text)."""
    lines = "\n".join(f"- {label}: {definition}" for label, definition in labels.items())
    return template.replace(LABELS_PLACEHOLDER, lines).replace(POST_PLACEHOLDER, post or "")
