"""Write one generation shard by consuming a model's vLLM service over HTTP.

Instruct models get ``/v1/chat/completions`` requests (the server applies the model's
chat template); base models get ``/v1/completions`` with a completion prompt that stops
at the first newline. Requests run concurrently with a bounded number in flight, are
retried with back-off on transient errors, and each carries its own seed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import polars as pl

from affalign import postprocess
from affalign.prompts import GenerationRequest, ShardSpec, build_requests, load_templates
from affalign.serve import is_healthy
from affalign.shards import write_shard

RETRIES = 5
Result = TypeVar("Result")
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}

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


class ServiceUnavailable(RuntimeError):
    """The model's server never came up, or died while this shard was being written."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float
    top_p: float


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def wait_for_service(
    service_file: str | Path,
    server_log: str | Path,
    timeout_s: float,
    poll_s: float = 1.0,
) -> dict[str, Any]:
    """Block until the service file says the server is ready and it answers ``/health``.

    Fails fast, pointing at the server log, when the service reports a failure or the
    server process is gone; fails after ``timeout_s`` seconds otherwise.
    """
    service_file = Path(service_file)
    began = time.time()
    seen_pid: int | None = None
    while True:
        if not service_file.exists():
            # Snakemake only starts a consumer once the service file exists; it is removed
            # when the service job fails or ends.
            raise ServiceUnavailable(
                f"the service file {service_file} is gone: the model server stopped or failed; "
                f"see its log {server_log}"
            )
        service = _read_json(service_file) or {}
        status = service.get("status")
        if status == "ready" and is_healthy(service["url"]):
            return service
        if status == "failed":
            raise ServiceUnavailable(
                f"the model server failed: {service.get('error', 'no reason recorded')}\n"
                f"Server log: {server_log}"
            )
        seen_pid = service.get("pid", seen_pid)
        if isinstance(seen_pid, int) and not _pid_alive(seen_pid):
            raise ServiceUnavailable(f"the model server (pid {seen_pid}) is gone; see its log {server_log}")
        if time.time() - began > timeout_s:
            raise ServiceUnavailable(
                f"no healthy model server after {timeout_s:.0f} s (service file {service_file}, "
                f"status {status!r}); see the server log {server_log}, or raise "
                "generation.server_start_timeout_s"
            )
        time.sleep(poll_s)


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


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    endpoint: str,
    payload: Mapping[str, Any],
    what: str,
    limiter: asyncio.Semaphore,
    server_log: str,
) -> dict[str, Any]:
    """POST ``payload`` to the server and return its JSON answer, retrying transient errors
    with back-off; ``what`` names the request in errors."""
    last_error = ""
    for attempt in range(RETRIES):
        async with limiter:
            try:
                async with session.post(url + endpoint, json=payload) as response:
                    if response.status == 200:
                        return await response.json()
                    detail = (await response.text())[:500]
                    if response.status not in TRANSIENT_STATUS:
                        raise ServiceUnavailable(
                            f"server rejected {what} with HTTP {response.status}: {detail}"
                        )
                    last_error = f"HTTP {response.status}: {detail}"
            except (TimeoutError, aiohttp.ClientError) as error:
                last_error = f"{type(error).__name__}: {error}"
        if not is_healthy(url):
            raise ServiceUnavailable(
                f"the model server at {url} stopped answering ({last_error}); see its log {server_log}"
            )
        await asyncio.sleep(min(30.0, 0.5 * 2**attempt) * (1 + random.random()))
    raise ServiceUnavailable(f"{what} failed {RETRIES} times ({last_error}); see the server log {server_log}")


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    request: GenerationRequest,
    served_name: str,
    style: RequestStyle,
    sampling: Sampling,
    limiter: asyncio.Semaphore,
    server_log: str,
) -> tuple[str, str, int]:
    endpoint, payload = _payload(request, served_name, style, sampling)
    body = await post_json(session, url, endpoint, payload, f"request {request.index}", limiter, server_log)
    return _parse(style, body)


def served_model_provenance(service: Mapping[str, Any], model_info: Mapping[str, Any]) -> dict[str, Any]:
    """What a shard records of the server that answered it: model source and revision,
    engine, device, engine options and the server's start-up time (seconds)."""
    return {
        "model_source": service.get("model_source"),
        "revision": model_info.get("revision"),
        "engine": service.get("engine"),
        "device": service.get("device"),
        "engine_options": service.get("engine_options"),
        "server_healthy_after_s": service.get("healthy_after_s"),
    }


def service_problem(service_file: Path, service: Mapping[str, Any]) -> str | None:
    """Why the service that was ready when the shard started can no longer be used, if so."""
    current = _read_json(service_file)
    if current is None:
        return f"the service file {service_file} is gone (the model server job ended or failed)"
    if current.get("status") != "ready" or current.get("url") != service["url"]:
        return f"the model server's status changed to {current.get('status')!r}: {current.get('error', '')}"
    pid = current.get("pid")
    if isinstance(pid, int) and not _pid_alive(pid):
        return f"the model server (pid {pid}) is gone"
    return None


async def _watch_service(
    service_file: Path, service: Mapping[str, Any], server_log: str, every_s: float
) -> None:
    while True:
        await asyncio.sleep(every_s)
        problem = service_problem(service_file, service)
        if problem:
            raise ServiceUnavailable(f"{problem}; see the server log {server_log}")


async def _generate_all(
    service_file: Path,
    service: Mapping[str, Any],
    requests: list[GenerationRequest],
    served_name: str,
    style: RequestStyle,
    sampling: Sampling,
    max_in_flight: int,
    request_timeout_s: float,
    server_log: str,
    watch_every_s: float = 2.0,
) -> list[tuple[str, str, int]]:
    url = service["url"]
    limiter = asyncio.Semaphore(max_in_flight)
    done = 0
    step = max(1, len(requests) // 10)

    async def tracked(request: GenerationRequest) -> tuple[str, str, int]:
        nonlocal done
        result = await _one(session, url, request, served_name, style, sampling, limiter, server_log)
        done += 1
        if done % step == 0 or done == len(requests):
            print(f"[affalign] {done}/{len(requests)} generations", flush=True)
        return result

    async with client_session(max_in_flight, request_timeout_s) as session:
        work = asyncio.gather(*(tracked(request) for request in requests))
        return await run_watched(work, service_file, service, server_log, watch_every_s)


def client_session(max_in_flight: int, request_timeout_s: float) -> aiohttp.ClientSession:
    """An HTTP session for one consumer: at most ``max_in_flight`` connections, and
    ``request_timeout_s`` seconds per request (create it inside the event loop)."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=request_timeout_s),
        connector=aiohttp.TCPConnector(limit=max_in_flight),
    )


async def run_watched(
    work: Awaitable[Result],
    service_file: Path,
    service: Mapping[str, Any],
    server_log: str,
    watch_every_s: float = 2.0,
) -> Result:
    """Await ``work`` while watching the service; a dead or withdrawn service ends it at once.

    A request in flight may wait on a server that is shutting down; the watchdog notices.
    """
    task = asyncio.ensure_future(work)
    watchdog = asyncio.ensure_future(_watch_service(service_file, service, server_log, watch_every_s))
    try:
        await asyncio.wait([task, watchdog], return_when=asyncio.FIRST_COMPLETED)
        if watchdog.done():
            task.cancel()
            watchdog.result()
        return task.result()
    finally:
        watchdog.cancel()
        task.cancel()


def shard_key(
    shard: ShardSpec, model_info: Mapping[str, Any], sampling: Sampling, prompts_file: str | Path
) -> str:
    """SHA-256 of everything that determines a shard's content (and the prompt templates)."""
    content = {
        "shard": dataclasses.asdict(shard),
        "model": dict(model_info),
        "sampling": dataclasses.asdict(sampling),
        "prompts": hashlib.sha256(Path(prompts_file).read_bytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _link_or_copy(source: Path, target: Path) -> None:
    """Place ``source`` at ``target`` atomically (hard link where possible)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def write_generation_shard(
    shard: ShardSpec,
    *,
    model_info: Mapping[str, Any],
    service_file: str | Path,
    server_log: str | Path,
    output: str | Path,
    prompts_file: str | Path,
    sampling: Sampling,
    max_in_flight: int,
    server_start_timeout_s: float,
    request_timeout_s: float,
    store: str | Path | None = None,
) -> pl.DataFrame:
    """Generate one shard through the model's service and write it.

    With a ``store`` folder, every finished shard is also kept there under the hash of what
    determines its content. Snakemake removes the outputs of *all* jobs of a service group
    when one of them fails; a rerun then takes finished shards back from the store instead
    of generating them again, so no finished shard is lost.
    """
    style = RequestStyle.of({**model_info, "kind": shard.kind})
    kind = style.kind
    model, issue, topic, prompt_type = shard.model, shard.issue, shard.topic, shard.prompt_type
    kept = Path(store) / f"{shard_key(shard, model_info, sampling, prompts_file)}.parquet" if store else None
    if kept is not None and kept.is_file():
        _link_or_copy(kept, Path(output))
        print(f"[affalign] {output}: finished earlier, taken from {kept}", flush=True)
        return pl.read_parquet(output)
    requests = build_requests(load_templates(prompts_file), shard)
    service = wait_for_service(service_file, server_log, server_start_timeout_s)
    began = time.time()
    results = asyncio.run(
        _generate_all(
            Path(service_file),
            service,
            requests,
            model,
            style,
            sampling,
            max_in_flight,
            request_timeout_s,
            str(server_log),
        )
    )
    wall = time.time() - began
    cleaned = [postprocess.clean_text(raw, kind) for raw, _, _ in results]
    frame = pl.DataFrame(
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
    provenance = {
        "stage": "generate",
        "model": model,
        **served_model_provenance(service, model_info),
        "kind": kind,
        "chat_template": style.chat,
        "chat_template_kwargs": dict(style.chat_template_kwargs),
        "sampling": {
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "n": 1,
            "stop": ["\n"] if kind == "base" and not style.chat else None,
        },
        "global_seed": shard.global_seed,
        "seed_derivation": (
            "sha256(global_seed, 'sample', model, issue, topic, prompt_type, index) mod 2^31-1"
        ),
        "template_ids": sorted({r.template_id for r in requests}),
        "prompts_file": str(prompts_file),
        "shard_wall_s": round(wall, 3),
        "output_tokens": int(frame["output_tokens"].sum()),
    }
    write_shard(frame, output, provenance)
    if kept is not None:
        _link_or_copy(Path(output), kept)
    print(
        f"[affalign] wrote {output}: {frame.height} generations, "
        f"{provenance['output_tokens']} tokens in {wall:.1f} s",
        flush=True,
    )
    return frame
