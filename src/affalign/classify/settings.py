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

from affalign.classify.lexicon import load as load_lexicon
from affalign.classify.llm import METHODS
from affalign.io import file_sha256
from affalign.service import EndpointSpec

# (reference, requested revision) -> the locked commit of a hub id; None for a reference
# that is no hub id (a local folder), which keeps what the config says.
LockedCommit = Callable[[str, str], "str | None"]


def classifier_spec(config: Mapping[str, Any], classifier: str, locked: LockedCommit) -> dict[str, Any]:
    """The classifier's config with its hub models' locked commits (``revision``; per label
    ``revisions`` for a binary set)."""
    # The gold file is what the classifier is checked against, not what its labels depend
    # on: adding or changing one reruns only the gold jobs.
    spec = {key: value for key, value in config["classifiers"][classifier].items() if key != "gold"}
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


def classifier_labels(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The labels a classifier's affect files have, from its config alone (a lexicon's from
    its installed wheel)."""
    if spec["type"] == "lexicon":
        return load_lexicon(spec["lexicon"]).labels
    if spec["type"] == "hf-binary-set":
        return tuple(spec["models"])
    return tuple(spec["labels"])


def requests_per_post(spec: Mapping[str, Any]) -> int:
    """Requests an LLM classifier sends per post (retries not counted), from its config entry
    ``classifiers.<c>``: one for method ``structured`` (every label in one answer), one per
    label for ``logprobs`` (a yes/no question each). What an endpoint judge's budget counts."""
    return len(spec["labels"]) if spec.get("method") == "logprobs" else 1


def llm_classifier_settings(
    config: Mapping[str, Any], classifier: str, judge_identity: Any
) -> dict[str, Any]:
    """What determines an LLM classifier's affect files: the judge (source, revision, dtype,
    chat template), labels and definitions, the prompt file's hash, method, seed.
    ``judge_identity``: the judge model as the workflow resolved it (``source``,
    ``revision``, ``chat_template``). An endpoint judge (``models.<m>.endpoint``), as its
    generation shards do: no revision or dtype, and last its base URL and served name (its
    limits and key variable are how the jobs run, never recorded).

    Per method (``classifiers.<c>.method``): ``structured`` keeps exactly the keys recorded
    before methods were configurable (``max_tokens``, no threshold: its labels are the
    judge's booleans), so finished studies do not reclassify; ``logprobs`` records its
    method and ``threshold`` instead of ``max_tokens`` (it generates one token)."""
    spec = config["classifiers"][classifier]
    judge = spec["model"]
    model = config["models"][judge]
    endpoint = EndpointSpec.from_config(judge, model) if "endpoint" in model else None
    settings = {
        "model": judge,
        "model_source": judge_identity.source,
        "revision": judge_identity.revision,
        "dtype": None if endpoint else model["engine"]["dtype"],
        "generation_config": model["engine"]["generation_config"],
        "chat": judge_identity.chat_template,
        "chat_template_kwargs": dict(model["chat_template_kwargs"]),
        "labels": dict(spec["labels"]),
        "prompt": spec["prompt"],
        "prompt_sha256": file_sha256(spec["prompt"]),
        "method": METHODS[spec.get("method", "structured")],
        "seed": config["seed"],
        "max_tokens": spec["max_tokens"],
    }
    if spec.get("method") == "logprobs":
        del settings["max_tokens"]
        settings["threshold"] = float(spec["threshold"])
    if endpoint is not None:
        # Added only for an endpoint judge: a served judge's recorded params stay as they were.
        settings["endpoint"] = endpoint.identity()
    return settings
