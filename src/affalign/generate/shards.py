"""Write one generation shard by consuming a model's vLLM service over HTTP.

Instruct models get ``/v1/chat/completions`` requests (the server applies the model's
chat template); base models get ``/v1/completions`` with a completion prompt that stops
at the first newline. Requests run concurrently with a bounded number in flight, are
retried with back-off on transient errors, and each carries its own seed.

What every consumer does around its shard (client, shard store, waiting for the server,
timing, the store first and then the output) is :func:`affalign.service.run_shard`; this
module supplies the requests and the table made of their answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from affalign.generate import postprocess
from affalign.generate.prompts import GenerationRequest, ShardSpec, build_requests, load_templates
from affalign.io import content_sha256, file_sha256
from affalign.service import ConsumerOptions, FinishedShard, ServiceClient, ShardWork, Timing, run_shard

SHARD_SCHEMA = {
    "post_id": pl.String,
    "model": pl.String,
    "issue": pl.String,
    "topic": pl.String,
    "prompt_type": pl.String,
    "index": pl.Int32,
    "template_id": pl.String,
    "seed": pl.Int64,
    "prompt": pl.String,
    "raw_text": pl.String,
    "text": pl.String,
    "finish_reason": pl.String,
    "output_tokens": pl.Int32,
    "is_empty": pl.Boolean,
    "is_degenerate": pl.Boolean,
    "is_refusal": pl.Boolean,
}


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float
    top_p: float


@dataclass(frozen=True)
class RequestStyle:
    """How a model is asked: chat (through its chat template) or plain completion text."""

    kind: str
    chat: bool
    chat_template_kwargs: Mapping[str, Any]

    @classmethod
    def of(cls, model_info: Mapping[str, Any]) -> RequestStyle:
        kind = model_info["kind"]
        return cls(
            kind=kind,
            chat=bool(model_info.get("chat_template", kind == "instruct")),
            chat_template_kwargs=dict(model_info.get("chat_template_kwargs") or {}),
        )


def _payload(
    request: GenerationRequest, served_name: str, style: RequestStyle, sampling: Sampling
) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {
        "model": served_name,
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": request.seed,
        "n": 1,
    }
    if style.chat:
        body["messages"] = [{"role": "user", "content": request.prompt}]
        if style.chat_template_kwargs:
            body["chat_template_kwargs"] = dict(style.chat_template_kwargs)
        return "/v1/chat/completions", body
    body["prompt"] = request.prompt
    if style.kind == "base":
        body["stop"] = ["\n"]
    return "/v1/completions", body


def _parse(style: RequestStyle, body: Mapping[str, Any]) -> tuple[str, str, int]:
    choice = body["choices"][0]
    text = choice["message"]["content"] if style.chat else choice["text"]
    tokens = int((body.get("usage") or {}).get("completion_tokens") or 0)
    return text or "", choice.get("finish_reason") or "", tokens


async def _generate_all(
    client: ServiceClient,
    requests: list[GenerationRequest],
    served_name: str,
    style: RequestStyle,
    sampling: Sampling,
) -> list[tuple[str, str, int]]:
    done = 0
    step = max(1, len(requests) // 10)

    async def one(request: GenerationRequest) -> tuple[str, str, int]:
        nonlocal done
        endpoint, payload = _payload(request, served_name, style, sampling)
        body = await client.post(endpoint, payload, f"request {request.index}")
        done += 1
        if done % step == 0 or done == len(requests):
            print(f"[affalign] {done}/{len(requests)} generations", flush=True)
        return _parse(style, body)

    return list(await asyncio.gather(*(one(request) for request in requests)))


def shard_key(
    shard: ShardSpec, model_info: Mapping[str, Any], sampling: Sampling, prompts_file: str | Path
) -> str:
    """SHA-256 of everything that determines a shard's content (and the prompt templates)."""
    content = {
        "shard": dataclasses.asdict(shard),
        "model": dict(model_info),
        "sampling": dataclasses.asdict(sampling),
        "prompts": file_sha256(prompts_file),
    }
    return content_sha256(content)


def write_generation_shard(
    shard: ShardSpec,
    *,
    model_info: Mapping[str, Any],
    prompts_file: str | Path,
    sampling: Sampling,
    output: str | Path,
    options: ConsumerOptions,
) -> pl.DataFrame:
    """Generate one shard through the model's service (or endpoint, ``options.endpoint``)
    and write it: :func:`~affalign.service.run_shard` with this shard's requests and table.

    With a store folder (``options.store``), every finished shard is also kept there under
    the hash of what determines its content (:func:`shard_key`). Snakemake removes the
    outputs of *all* jobs of a service group when one of them fails; a rerun then takes
    finished shards back from the store instead of generating them again, so no finished
    shard is lost.
    """
    style = RequestStyle.of({**model_info, "kind": shard.kind})
    requests = build_requests(load_templates(prompts_file), shard)

    async def ask(client: ServiceClient) -> list[tuple[str, str, int]]:
        return await _generate_all(client, requests, client.served_name(shard.model), style, sampling)

    def finish(results: list[tuple[str, str, int]], client: ServiceClient, timing: Timing) -> FinishedShard:
        frame = _shard_frame(shard, requests, results, style.kind)
        provenance = {
            "stage": "generate",
            "model": shard.model,
            **client.provenance(model_info),
            "kind": style.kind,
            "chat_template": style.chat,
            "chat_template_kwargs": dict(style.chat_template_kwargs),
            "sampling": {
                "max_tokens": sampling.max_tokens,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "n": 1,
                "stop": ["\n"] if style.kind == "base" and not style.chat else None,
            },
            "global_seed": shard.global_seed,
            "seed_derivation": (
                "sha256(global_seed, 'sample', model, issue, topic, prompt_type, index) mod 2^31-1"
            ),
            "template_ids": sorted({r.template_id for r in requests}),
            "prompts_file": str(prompts_file),
            **timing.provenance(len(requests)),
            "output_tokens": int(frame["output_tokens"].sum()),
        }
        summary = (
            f"wrote {output}: {frame.height} generations, "
            f"{provenance['output_tokens']} tokens in {timing.wall:.1f} s"
        )
        return FinishedShard(frame, provenance, summary)

    key = shard_key(shard, model_info, sampling, prompts_file)
    return run_shard(options, key, ShardWork(ask, finish), output)


def _shard_frame(
    shard: ShardSpec, requests: list[GenerationRequest], results: list[tuple[str, str, int]], kind: str
) -> pl.DataFrame:
    """A shard's rows: one per request, its text cleaned and flagged."""
    model, issue, topic, prompt_type = shard.model, shard.issue, shard.topic, shard.prompt_type
    cleaned = [postprocess.clean_text(raw, kind) for raw, _, _ in results]
    return pl.DataFrame(
        {
            "post_id": [f"{model}/{issue}/{topic}/{prompt_type}/{r.index:06d}" for r in requests],
            "model": model,
            "issue": issue,
            "topic": topic,
            "prompt_type": prompt_type,
            "index": [r.index for r in requests],
            "template_id": [r.template_id for r in requests],
            "seed": [r.seed for r in requests],
            "prompt": [r.prompt for r in requests],
            "raw_text": [raw for raw, _, _ in results],
            "text": cleaned,
            "finish_reason": [reason for _, reason, _ in results],
            "output_tokens": [tokens for _, _, tokens in results],
            "is_empty": [text == "" for text in cleaned],
            "is_degenerate": [postprocess.is_degenerate(text) for text in cleaned],
            "is_refusal": [postprocess.is_refusal(text) for text in cleaned],
        },
        schema=SHARD_SCHEMA,
    )
