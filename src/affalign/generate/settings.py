"""What a generation shard contains, as the workflow hands it to the job (``--settings``).

:meth:`GenerationSettings.from_config` is the one place that decides which config values
determine a shard: rules ``generate`` and ``generate_endpoint`` record :meth:`params` as
their params, so changing any of them regenerates the shard and nothing else does.
``affalign.generate.job`` reads the same dict back. Its keys, their order and their values
are a contract with every finished shard (the params trigger compares its repr; the shard
store key hashes it): ``tests/config/test_shard_settings.py`` pins them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from affalign.service import EndpointSpec


@dataclass(frozen=True)
class GenerationSettings:
    """What determines a generation shard's content. ``identity`` in :meth:`from_config` is
    the model as the workflow resolved it: ``source`` (folder, hub id or endpoint label),
    ``revision`` (the locked hub commit; None for a folder) and ``chat_template``."""

    seed: int
    model_source: str
    revision: str | None
    kind: str
    chat_template: bool
    chat_template_kwargs: dict[str, Any]
    dtype: str | None
    # vllm: only these sampling parameters; auto: the model's generation_config.json too.
    generation_config: str
    issue_name: str
    topic_name: str
    n_per_shard: int
    max_tokens: int
    temperature: float
    top_p: float
    # An endpoint model's base URL and served name, instead of a revision and dtype.
    endpoint: dict[str, str] | None = None

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], model: str, issue: str, topic: str, identity: Any
    ) -> GenerationSettings:
        entry = config["models"][model]
        issue_spec = config["issues"][issue]
        generation = config["generation"]
        settings = cls(
            seed=config["seed"],
            model_source=identity.source,
            revision=identity.revision,
            kind=entry["kind"],
            chat_template=identity.chat_template,
            chat_template_kwargs=dict(entry["chat_template_kwargs"]),
            dtype=entry["engine"]["dtype"],
            generation_config=entry["engine"]["generation_config"],
            issue_name=issue_spec["name"],
            topic_name=issue_spec["topics"][topic]["name"],
            n_per_shard=generation["n_per_shard"],
            max_tokens=generation["max_tokens"],
            temperature=generation["temperature"],
            top_p=generation["top_p"],
        )
        if "endpoint" not in entry:
            return settings
        spec = EndpointSpec.from_config(model, entry)
        return cls(**{**asdict(settings), "revision": None, "dtype": None, "endpoint": spec.identity()})

    def params(self) -> dict[str, Any]:
        """The rule's params and the job's ``--settings``: every field, in order; an endpoint
        only for an endpoint model."""
        params = asdict(self)
        if self.endpoint is None:
            del params["endpoint"]
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GenerationSettings:
        return cls(**params)
