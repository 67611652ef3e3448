"""What an opinion shard and a survey table contain, as the workflow hands it to their jobs.

:meth:`OpinionSettings.from_config` decides which config values determine an opinion shard
(rules ``opinion_shard`` and ``opinion_shard_endpoint`` record :meth:`~OpinionSettings.params`;
``affalign.opinions.job`` reads it back as ``--settings``) and :func:`survey_settings` how a
survey's answers are read (rule ``survey_table``). Keys, order and values are a contract with
every finished shard (the params trigger compares the repr; the shard store key hashes it):
``tests/config/test_shard_settings.py`` pins them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from affalign.opinions.positional import parse_context_slug
from affalign.service import EndpointSpec


@dataclass(frozen=True)
class OpinionSettings:
    """What determines an opinion shard's content; changing any of it rescores the shard.
    ``identity`` in :meth:`from_config`: the model as the workflow resolved it (``source``,
    ``revision``, ``chat_template``)."""

    model_source: str
    revision: str | None
    kind: str
    chat: bool
    chat_template_kwargs: dict[str, Any]
    dtype: str | None
    logprobs: str
    # Only the top-k mode reads it: changing it rescores nothing in exact mode.
    top_logprobs: int | None
    steering: Mapping[str, Any] | None
    # An endpoint model's base URL and served name, instead of a revision and dtype.
    endpoint: dict[str, str] | None = None

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], model: str, context: str, identity: Any
    ) -> OpinionSettings:
        opinions = config["opinions"]
        entry = config["models"][model]
        _, group = parse_context_slug(context)
        settings = cls(
            model_source=identity.source,
            revision=identity.revision,
            kind=entry["kind"],
            chat=opinions["use_chat_template"] and identity.chat_template,
            chat_template_kwargs=dict(entry["chat_template_kwargs"]),
            dtype=entry["engine"]["dtype"],
            logprobs=opinions["logprobs"],
            top_logprobs=opinions["top_logprobs"] if opinions["logprobs"] == "top-k" else None,
            steering=opinions["groups"][group] if group else None,
        )
        if "endpoint" not in entry:
            return settings
        # The endpoint's log-probability method (auto: detected before the run); top_logprobs
        # matters unless the method is exact.
        spec = EndpointSpec.from_config(model, entry)
        endpoint = {
            "revision": None,
            "dtype": None,
            "endpoint": spec.identity(),
            "logprobs": spec.logprobs,
            "top_logprobs": None
            if spec.logprobs == "exact"
            else spec.top_logprobs or opinions["top_logprobs"],
        }
        return cls(**{**settings.fields(), **endpoint})

    def fields(self) -> dict[str, Any]:
        # Not asdict: steering stays the config's own mapping, as the job receives it.
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def params(self) -> dict[str, Any]:
        """The rule's params and the job's ``--settings``: every field, in order; an endpoint
        only for an endpoint model."""
        params = self.fields()
        if self.endpoint is None:
            del params["endpoint"]
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> OpinionSettings:
        return cls(**params)


def survey_settings(config: Mapping[str, Any], survey: str) -> dict[str, Any]:
    """How a survey's answers are read (rule ``survey_table``); changing any of it remakes
    its table."""
    opinions = config["opinions"]
    spec = opinions["surveys"][survey]
    return {
        "form": spec["form"],
        "groups": list(opinions["groups"]),
        "compare_groups": list(opinions["compare_groups"]),
        "group_column": spec["columns"]["group"],
        "weight_column": spec["columns"]["weight"],
    }
