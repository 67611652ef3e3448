"""Prompt template pools, per-generation seeds and template choice.

A pool is keyed by model kind (``base`` or ``instruct``) and mode (``default`` or
``steered``). Templates use the placeholders ``{topic}``, ``{issue}`` and, in steered
pools, ``{group}``. Seeds and template choices are derived by hashing the generation's
coordinates, never from arrival order, so a shard is the same whoever runs it and
whatever else runs beside it.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from affalign.io import DEFAULT_PROMPT_TYPE, derive_seed

KINDS = ("base", "instruct")
MODES = ("default", "steered")
PLACEHOLDERS = {"topic", "issue", "group"}


@dataclass(frozen=True)
class Template:
    id: str
    text: str


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: where it sits in the shard, the template it used and its seed."""

    index: int
    template_id: str
    prompt: str
    seed: int


@dataclass(frozen=True)
class ShardSpec:
    """One generation shard: its coordinates, the names its prompts use, its size and seed.

    ``prompt_type`` is ``default`` or the name of the group the prompts steer towards.
    """

    global_seed: int
    model: str
    kind: str
    issue: str
    issue_name: str
    topic: str
    topic_name: str
    prompt_type: str
    count: int


class PromptError(ValueError):
    """A template file that cannot be used."""


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def load_templates(path: str | Path) -> dict[str, dict[str, list[Template]]]:
    """Read and check the four template pools from a YAML file."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    pools: dict[str, dict[str, list[Template]]] = {}
    for kind in KINDS:
        pools[kind] = {}
        for mode in MODES:
            entries = (raw or {}).get(kind, {}).get(mode)
            if not entries:
                raise PromptError(f"{path}: pool {kind}.{mode} is missing or empty")
            templates = []
            for position, entry in enumerate(entries):
                where = f"{path}: {kind}.{mode}[{position}]"
                if not isinstance(entry, dict) or not {"id", "text"} <= entry.keys():
                    raise PromptError(f"{where} needs 'id' and 'text'")
                names = _placeholders(entry["text"])
                unknown = names - PLACEHOLDERS
                if unknown:
                    raise PromptError(f"{where} uses unknown placeholders {sorted(unknown)}")
                if "topic" not in names:
                    raise PromptError(f"{where} must mention {{topic}}")
                if (mode == "steered") != ("group" in names):
                    need = "must" if mode == "steered" else "must not"
                    raise PromptError(f"{where} {need} name the {{group}}")
                templates.append(Template(id=str(entry["id"]), text=entry["text"]))
            ids = [template.id for template in templates]
            if len(set(ids)) != len(ids):
                raise PromptError(f"{path}: pool {kind}.{mode} has duplicate template ids")
            pools[kind][mode] = templates
    return pools


def pool_for(pools: dict[str, dict[str, list[Template]]], kind: str, prompt_type: str) -> list[Template]:
    mode = "default" if prompt_type == DEFAULT_PROMPT_TYPE else "steered"
    return pools[kind][mode]


def render(template: Template, topic: str, issue: str, group: str | None) -> str:
    values = {"topic": topic, "issue": issue}
    if group is not None:
        values["group"] = group
    return template.text.format(**values)


def build_requests(pools: dict[str, dict[str, list[Template]]], shard: ShardSpec) -> list[GenerationRequest]:
    """The generations of one shard, each with its template and seed."""
    pool = pool_for(pools, shard.kind, shard.prompt_type)
    group = None if shard.prompt_type == DEFAULT_PROMPT_TYPE else shard.prompt_type
    requests = []
    for index in range(shard.count):
        coordinates = (shard.model, shard.issue, shard.topic, shard.prompt_type, index)
        template = pool[derive_seed(shard.global_seed, "template", *coordinates) % len(pool)]
        requests.append(
            GenerationRequest(
                index=index,
                template_id=template.id,
                prompt=render(template, shard.topic_name, shard.issue_name, group),
                seed=derive_seed(shard.global_seed, "sample", *coordinates),
            )
        )
    return requests
