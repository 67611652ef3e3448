"""What a classifier's affect files depend on, as the workflow hands it to the job.

:func:`classifier_spec` (rules ``classify_generated`` and ``classify_human``, ``--spec``) is
the classifier's config with its hub models' locked commits; :func:`llm_classifier_settings`
(rules ``classify_generated_llm`` and ``classify_human_llm``, ``--settings``) what an LLM
judge's labels depend on. Both are recorded as the rules' params, so their keys, order and
values are a contract with every finished affect file (``tests/config/test_shard_settings.py``
pins them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from affalign.classify.llm import METHOD
from affalign.io import file_sha256

# (reference, requested revision) -> the locked commit of a hub id; None for a reference
# that is no hub id (a local folder), which keeps what the config says.
LockedCommit = Callable[[str, str], "str | None"]


def classifier_spec(config: Mapping[str, Any], classifier: str, locked: LockedCommit) -> dict[str, Any]:
    """The classifier's config with its hub models' locked commits (``revision``; per label
    ``revisions`` for a binary set)."""
    spec = dict(config["classifiers"][classifier])
    default = spec.get("revision") or "main"
    if spec["type"] == "hf":
        commit = locked(spec["model"], default)
        if commit is not None:
            spec["revision"] = commit
    elif spec["type"] == "hf-binary-set":
        wanted = spec.get("revisions", {})
        commits = {
            label: locked(reference, wanted.get(label, default))
            for label, reference in spec["models"].items()
        }
        spec["revisions"] = {label: commit for label, commit in commits.items() if commit is not None}
    return spec


def llm_classifier_settings(
    config: Mapping[str, Any], classifier: str, judge_identity: Any
) -> dict[str, Any]:
    """What determines an LLM classifier's affect files: the judge (source, revision, dtype,
    chat template), labels and definitions, the prompt file's hash, method, seed.
    ``judge_identity``: the judge model as the workflow resolved it (``source``,
    ``revision``, ``chat_template``)."""
    spec = config["classifiers"][classifier]
    judge = spec["model"]
    model = config["models"][judge]
    return {
        "model": judge,
        "model_source": judge_identity.source,
        "revision": judge_identity.revision,
        "dtype": model["engine"]["dtype"],
        "generation_config": model["engine"]["generation_config"],
        "chat": judge_identity.chat_template,
        "chat_template_kwargs": dict(model["chat_template_kwargs"]),
        "labels": dict(spec["labels"]),
        "prompt": spec["prompt"],
        "prompt_sha256": file_sha256(spec["prompt"]),
        "method": METHOD,
        "seed": config["seed"],
        "max_tokens": spec["max_tokens"],
    }
