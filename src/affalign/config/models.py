"""A configured model as the workflow resolves it for its jobs: where its weights come from
(folder, hub id at its locked commit, or an endpoint) and whether prompts go through its
chat template. The stages' ``from_config`` constructors (``affalign.generate``,
``affalign.opinions``, ``affalign.classify``) take this identity instead of resolving the
weights lock themselves, which belongs to this layer (:mod:`~affalign.config.weights`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from affalign.config.weights import hub_revision


@dataclass(frozen=True)
class ModelIdentity:
    """A model as its jobs see it: ``source`` (:func:`model_source`), ``revision`` and
    ``chat_template`` (:func:`uses_chat_template`)."""

    source: str
    # The locked hub commit; None for a local folder or an endpoint, which have none.
    revision: str | None
    chat_template: bool

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], model: str, lock: Mapping[tuple[str, str], str]
    ) -> ModelIdentity:
        entry = config["models"][model]
        revision = hub_revision(lock, entry["hub_id"], entry["revision"]) if "hub_id" in entry else None
        return cls(model_source(entry), revision, uses_chat_template(entry))


def model_source(entry: Mapping[str, Any]) -> str:
    """What a model's jobs load, in words: its folder, its hub id, or its endpoint."""
    if "endpoint" in entry:
        return f"endpoint {entry['endpoint']['model']} at {entry['endpoint']['base_url']}"
    return entry.get("path") or entry["hub_id"]


def uses_chat_template(entry: Mapping[str, Any]) -> bool:
    """models.<m>.chat_template, whose default depends on the kind (so the schema has none)."""
    return entry.get("chat_template", entry["kind"] == "instruct")


def self_classification_warnings(config: Mapping[str, Any], models: Iterable[str]) -> list[str]:
    """One line per LLM classifier whose judge is among the run's ``models`` (allowed)."""
    models = set(models)
    return [
        f"affalign: classifier {name}: {spec['model']} classifies its own generations "
        "(allowed; recorded as judge_is_generator in its affect files)"
        for name, spec in config["classifiers"].items()
        if spec["type"] == "llm" and spec["model"] in models
    ]
