"""Write one opinion shard: ask a model's vLLM service for the answer letters' log-probabilities.

One request per question, ``max_tokens=1`` and ``temperature=0``. In ``exact`` mode (the
default) the request names the letters' token ids (``logprob_token_ids``, with
``logprobs`` set and ``return_tokens_as_token_ids``), so every letter's raw
log-probability comes back whatever its rank; ``top-k`` mode asks for the ``k`` most
likely tokens only and floors the letters missing from them (the paper's recipe, for
engines without ``logprob_token_ids``).

Token ids come from the server's own ``/tokenize`` endpoint: the id of a letter is the one
token that ``"Answer:" + "A"`` (and ``"Answer:" + " A"``) adds to ``"Answer:"``, so
tokenizers that fold the space into the letter (SentencePiece ``▁A``) are handled, and the
consumer needs neither transformers nor its own copy of the tokenizer. A variant that
adds several tokens is not a letter token and is skipped.

Prompts are sent as plain completion text (as in the paper), or through the model's chat
template when the study asks for it and the model uses one for generation.

An endpoint model (``models.<m>.endpoint``) may leave the method to ``auto``: it is
detected once per endpoint before the run (:func:`detect_endpoint_logprobs`, written to
``results/endpoints/{model}.json``) — ``exact`` where the server tokenizes and honours
``logprob_token_ids`` (vLLM), ``top-k`` otherwise (hosted APIs give at most 20) — and the
method used is recorded in every shard's provenance.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from affalign.io import atomic_write_text, content_sha256, file_sha256
from affalign.opinions.positional import (
    CorruptedTopK,
    Steering,
    context_text,
    is_corrupted_top_k,
    opinion_prompt,
    option_distribution,
    parse_context_slug,
)
from affalign.opinions.survey import LETTERS, Question, read_questions
from affalign.service import (
    ConsumerOptions,
    EndpointClient,
    EndpointError,
    EndpointSpec,
    FinishedShard,
    RequestRejected,
    ServiceClient,
    ShardWork,
    Timing,
    run_shard,
)

ANCHOR = "Answer:"
SEPARATORS = ("", " ")
MODES = ("exact", "top-k")
# "auto" (endpoints only): detected before the run, resolved to one of MODES in the job.
AUTO = "auto"
# Statuses with which a server says it does not offer what a request asked for.
UNSUPPORTED_STATUS = (400, 404, 405, 422, 501)
PROBE_PROMPT = "Question: Is this a question?\nA. Yes\nB. No\nAnswer:"
TOKEN_ID_PREFIX = "token_id:"

OPINION_SCHEMA = {
    "model": pl.String,
    "survey": pl.String,
    "context": pl.String,
    "method": pl.String,
    "steered_group": pl.String,
    "question_id": pl.String,
    "letter": pl.String,
    "option": pl.String,
    "ordinal": pl.Float64,
    "is_refusal": pl.Boolean,
    "logprob": pl.Float64,
    "floored": pl.Boolean,
    "p": pl.Float64,
    "p_ordinal": pl.Float64,
    "refusal_mass": pl.Float64,
    "prompt": pl.String,
}


@dataclass(frozen=True)
class Scoring:
    """How answer probabilities are requested: ``exact`` token ids or the ``top-k`` tokens,
    and whether the prompt goes through the model's chat template."""

    mode: str = "exact"
    top_logprobs: int | None = None
    chat: bool = False
    chat_template_kwargs: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.mode not in (*MODES, AUTO):
            raise ValueError(f"unknown logprobs mode {self.mode!r}; use one of {MODES} or {AUTO!r}")
        if self.mode == "top-k" and not self.top_logprobs:
            raise ValueError("the top-k mode needs top_logprobs (at least 1)")


def added_token(prefix: Sequence[int], extended: Sequence[int]) -> int | None:
    """The single token ``extended`` adds after ``prefix``, or None if it adds several or
    changes the prefix's tokens."""
    if len(extended) != len(prefix) + 1 or list(extended[: len(prefix)]) != list(prefix):
        return None
    return int(extended[-1])


def payload(prompt: str, served_name: str, scoring: Scoring, token_ids: Sequence[int]) -> tuple[str, dict]:
    """Endpoint and body of one question's request."""
    body: dict[str, Any] = {"model": served_name, "max_tokens": 1, "temperature": 0.0, "n": 1}
    exact = scoring.mode == "exact"
    if exact:
        body["logprob_token_ids"] = list(token_ids)
        body["return_tokens_as_token_ids"] = True
    if scoring.chat:
        body["messages"] = [{"role": "user", "content": prompt}]
        body["logprobs"] = True
        body["top_logprobs"] = 1 if exact else scoring.top_logprobs
        if scoring.chat_template_kwargs:
            body["chat_template_kwargs"] = dict(scoring.chat_template_kwargs)
        return "/v1/chat/completions", body
    body["prompt"] = prompt
    body["logprobs"] = 1 if exact else scoring.top_logprobs
    return "/v1/completions", body


def answer_logprobs(body: Mapping[str, Any], chat: bool) -> dict[str | int, float]:
    """Token -> log-probability at the first generated position of a response.

    Keys written ``token_id:<n>`` (``return_tokens_as_token_ids``) become the integer ``n``.
    """
    logprobs = body["choices"][0].get("logprobs") or {}
    if chat:
        content = logprobs.get("content") or [{}]
        entries = {e["token"]: e["logprob"] for e in (content[0].get("top_logprobs") or [])}
    else:
        tops = logprobs.get("top_logprobs") or []
        entries = dict(tops[0] or {}) if tops else {}
    if not entries:
        raise ValueError("the response holds no log-probabilities for the answer token")
    return {
        int(token[len(TOKEN_ID_PREFIX) :]) if token.startswith(TOKEN_ID_PREFIX) else token: float(value)
        for token, value in entries.items()
    }


async def letter_token_ids(
    client: ServiceClient, served_name: str, letters: Sequence[str]
) -> dict[str, list[int]]:
    """Per letter, the distinct token ids of ``A`` and `` A`` right after ``Answer:``."""

    async def tokens(text: str) -> list[int]:
        body = {"model": served_name, "prompt": text, "add_special_tokens": False}
        answer = await client.post("/tokenize", body, f"tokenize {text!r}")
        return list(answer["tokens"])

    texts = [ANCHOR, *(ANCHOR + sep + letter for letter in letters for sep in SEPARATORS)]
    prefix, *extended = await asyncio.gather(*(tokens(text) for text in texts))
    found: dict[str, list[int]] = {}
    for position, letter in enumerate(letters):
        pair = extended[position * len(SEPARATORS) : (position + 1) * len(SEPARATORS)]
        ids = [added_token(prefix, candidate) for candidate in pair]
        found[letter] = list(dict.fromkeys(i for i in ids if i is not None))
        if not found[letter]:
            raise ValueError(
                f"the model's tokenizer encodes neither {letter!r} nor {' ' + letter!r} after {ANCHOR!r} "
                "as one token; its answer letters cannot be scored"
            )
    return found


@dataclass(frozen=True)
class OpinionShard:
    """One opinion shard: a model, a survey topic and a context (``default`` or
    ``<method>-<group>``) with the steering texts of that group."""

    model: str
    survey: str
    context: str
    steering: Steering | None


# Waits before each new request after a corrupted top-k answer: the exact-mode requests it
# was batched with are usually done by then (about a minute in all).
CORRUPTED_TOP_K_WAITS_S = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


async def answer_with_a_sound_top_k(
    client: ServiceClient, endpoint: str, body: Mapping[str, Any], what: str, scoring: Scoring
) -> dict[str | int, float]:
    """One question's answer log-probabilities; in top-k mode an impossible answer (see
    :func:`~affalign.opinions.positional.is_corrupted_top_k`) is asked again after a wait,
    and a shard fails rather than score one. Only a server shared with requests for
    specific token ids (an endpoint used by another study or model in ``exact`` mode) gives
    such answers."""
    answer = answer_logprobs(await client.post(endpoint, body, what), scoring.chat)
    if scoring.mode == "exact":
        return answer
    for wait_s in CORRUPTED_TOP_K_WAITS_S:
        if not is_corrupted_top_k(answer):
            return answer
        print(f"[affalign] {what}: impossible top-k answer; asking again in {wait_s:.0f} s", flush=True)
        await asyncio.sleep(wait_s)
        answer = answer_logprobs(await client.post(endpoint, body, what), scoring.chat)
    if is_corrupted_top_k(answer):
        raise CorruptedTopK(
            answer,
            f"{what}, {len(CORRUPTED_TOP_K_WAITS_S) + 1} times. Score this model when no exact-mode "
            "requests reach its server, or with logprobs: exact",
        )
    return answer


async def _score_all(
    client: ServiceClient,
    prompts: Sequence[str],
    letters: Sequence[str],
    served_name: str,
    scoring: Scoring,
) -> tuple[dict[str, list[int]], list[dict[str | int, float]]]:
    ids: dict[str, list[int]] = {}
    if scoring.mode == "exact":
        ids = await letter_token_ids(client, served_name, letters)
    every = sorted({i for values in ids.values() for i in values})

    async def one(index: int, prompt: str) -> dict[str | int, float]:
        endpoint, body = payload(prompt, served_name, scoring, every)
        return await answer_with_a_sound_top_k(client, endpoint, body, f"question {index}", scoring)

    return ids, list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))


def _variants(letter: str, ids: Mapping[str, list[int]], exact: bool) -> list[str | int]:
    return list(ids[letter]) if exact else [letter, f" {letter}"]


# --- Which log-probabilities an endpoint offers (endpoints only) ---------------------------


class NoLogprobs(EndpointError):
    """An endpoint that gives no log-probabilities: it cannot take the positional stage."""


@dataclass(frozen=True)
class LogprobSupport:
    """The method an endpoint's shards use: ``exact`` or ``top-k`` (with ``top_logprobs``),
    and how it was found (``detail``)."""

    method: str
    top_logprobs: int | None
    detail: str

    def scoring(self, configured: Scoring) -> Scoring:
        return dataclasses.replace(configured, mode=self.method, top_logprobs=self.top_logprobs)


def _unsupported(error: Exception) -> bool:
    return isinstance(error, RequestRejected) and error.status in UNSUPPORTED_STATUS


async def detect_logprob_support(
    client: ServiceClient, served_name: str, scoring: Scoring, top_logprobs: int = 20
) -> LogprobSupport:
    """Ask the server once which method it offers, by the route the shards use (chat or not).

    ``exact`` when it tokenizes the letters (``/tokenize``) and a request naming their token
    ids (``logprob_token_ids``) returns every one of them; else ``top-k`` with the largest of
    ``top_logprobs``, 5 and 1 it accepts; else :class:`NoLogprobs`. Authorisation and
    transient failures propagate (they say nothing about log-probabilities).
    """
    tried = []
    try:
        ids = await letter_token_ids(client, served_name, ["A", "B"])
        every = sorted({i for values in ids.values() for i in values})
        endpoint, body = payload(PROBE_PROMPT, served_name, dataclasses.replace(scoring, mode="exact"), every)
        found = answer_logprobs(await client.post(endpoint, body, "a log-probability probe"), scoring.chat)
        if all(i in found for i in every):
            return LogprobSupport(
                "exact", None, f"{endpoint} returned the log-probabilities of token ids {every}"
            )
        tried.append(f"logprob_token_ids: the answer lacks the requested token ids {every}")
    except (RequestRejected, ValueError) as error:
        if isinstance(error, RequestRejected) and not _unsupported(error):
            raise
        tried.append(f"exact: {error}")
    for k in sorted({top_logprobs, min(top_logprobs, 5), 1}, reverse=True):
        probe = Scoring(
            mode="top-k", top_logprobs=k, chat=scoring.chat, chat_template_kwargs=scoring.chat_template_kwargs
        )
        endpoint, body = payload(PROBE_PROMPT, served_name, probe, [])
        try:
            found = answer_logprobs(
                await client.post(endpoint, body, "a log-probability probe"), scoring.chat
            )
        except (RequestRejected, ValueError) as error:
            if isinstance(error, RequestRejected) and not _unsupported(error):
                raise
            tried.append(f"top-{k}: {error}")
            continue
        return LogprobSupport(
            "top-k", k, f"{endpoint} returned {len(found)} of the top {k} log-probabilities"
        )
    route = "/v1/chat/completions" if scoring.chat else "/v1/completions"
    hint = "" if scoring.chat else "; a chat-only endpoint needs opinions.use_chat_template: true"
    raise NoLogprobs(f"gives no log-probabilities on {route} ({'; '.join(tried)}){hint}")


def detect_endpoint_logprobs(spec: EndpointSpec, scoring: Scoring) -> LogprobSupport:
    """:func:`detect_logprob_support` for an endpoint model, as a run's pre-flight; a
    :class:`NoLogprobs` refusal names the model and says that it cannot take the stage."""
    client = EndpointClient(spec, max_in_flight=1)
    client.wait()
    k = scoring.top_logprobs or 20
    try:
        return asyncio.run(client.run(lambda c: detect_logprob_support(c, spec.served_model, scoring, k)))
    except NoLogprobs as error:
        raise NoLogprobs(
            f"the endpoint {spec.label()} {error}: it cannot take the positional "
            f"(opinions) stage; leave it out with --config only_models=[...] or drop the opinions section"
        ) from None


def write_logprob_support(path: str | Path, support: LogprobSupport, spec: EndpointSpec) -> None:
    record = {"model": spec.model, "host": spec.host, "served_model": spec.served_model}
    record.update(dataclasses.asdict(support), detected_at=time.time())
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True))


def read_logprob_support(path: str | Path | None, spec: EndpointSpec) -> LogprobSupport | None:
    """The detection the run's pre-flight wrote, if it is there and is for this endpoint."""
    try:
        record = json.loads(Path(path).read_text()) if path else None
    except (OSError, ValueError):
        return None
    if not record or (record.get("host"), record.get("served_model")) != (spec.host, spec.served_model):
        return None
    return LogprobSupport(record["method"], record.get("top_logprobs"), record.get("detail", ""))


def opinion_shard_key(
    shard: OpinionShard,
    model_info: Mapping[str, Any],
    scoring: Scoring,
    questions_file: str | Path,
    detected: LogprobSupport | None = None,
) -> str:
    """SHA-256 of everything that determines an opinion shard's content (the shard store's key)."""
    content = {
        "shard": dataclasses.asdict(shard),
        "model": dict(model_info),
        "scoring": dataclasses.asdict(scoring),
        "detected": dataclasses.asdict(detected) if detected else None,
        "questions": file_sha256(questions_file),
    }
    return content_sha256(content)


def write_opinion_shard(
    shard: OpinionShard,
    *,
    model_info: Mapping[str, Any],
    questions_file: str | Path,
    scoring: Scoring,
    output: str | Path,
    options: ConsumerOptions,
    detected: LogprobSupport | None = None,
) -> pl.DataFrame:
    """Score every question of a survey topic under one context and write the shard
    (:func:`~affalign.service.run_shard` with this shard's requests and table).

    The model is reached through its service, or its endpoint (``options.endpoint``); a
    ``scoring`` mode of ``auto`` takes the method ``detected`` before the run, or detects it.
    With a store folder (``options.store``) the shard is kept there first and taken back from
    there on a rerun, and a shard whose output cannot be written fails only after its siblings
    (:mod:`affalign.service.consumer`, as for generation shards).
    """
    method, steered_group = parse_context_slug(shard.context)
    questions: list[Question] = read_questions(questions_file)
    prompts = [opinion_prompt(q, method, shard.steering) for q in questions]
    letters = LETTERS[: max(len(q.options) for q in questions)]
    chosen = {"by": "configuration", "detail": None}

    async def ask(client: ServiceClient):
        served_name = client.served_name(shard.model)
        used = scoring
        if scoring.mode == AUTO:
            support = detected or await detect_logprob_support(
                client, served_name, scoring, scoring.top_logprobs or 20
            )
            chosen.update(
                by="detection before the run" if detected else "detection by this job", detail=support.detail
            )
            used = support.scoring(scoring)
        return used, *(await _score_all(client, prompts, letters, served_name, used))

    def finish(answered, client: ServiceClient, timing: Timing) -> FinishedShard:
        used, ids, answers = answered
        exact = used.mode == "exact"
        rows = []
        for question, prompt, logprobs in zip(questions, prompts, answers, strict=True):
            variants = [_variants(letter, ids, exact) for letter in question.letters]
            try:
                found = option_distribution(logprobs, variants, question.refusal, exact=exact)
            except ValueError as error:
                raise ValueError(f"{shard.survey}/{question.id} ({shard.context}): {error}") from error
            for i, letter in enumerate(question.letters):
                rows.append(
                    (
                        shard.model, shard.survey, shard.context, method, steered_group, question.id, letter,
                        question.options[i], question.ordinals[i], question.refusal[i], found.logprobs[i],
                        found.floored[i], found.p[i], None if question.refusal[i] else found.p_ordinal[i],
                        found.refusal_mass, prompt,
                    )
                )  # fmt: skip
        frame = pl.DataFrame(rows, schema=OPINION_SCHEMA, orient="row")
        provenance = {
            "stage": "opinions",
            "model": shard.model,
            **client.provenance(model_info),
            "kind": model_info.get("kind"),
            "chat_template": used.chat,
            "chat_template_kwargs": dict(used.chat_template_kwargs or {}),
            "scoring": {
                "mode": used.mode,
                "top_logprobs": None if exact else used.top_logprobs,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs_mode": "server default (raw_logprobs)",
                "letter_variants": ["A", " A"],
                "floor": None if exact else "log(min(p_min, remaining_mass / n_missing))",
                "mode_chosen_by": chosen["by"],
                "mode_detection": chosen["detail"],
            },
            "letter_token_ids": ids,
            "survey": shard.survey,
            "context": shard.context,
            "context_text": context_text(method, shard.steering),
            "questions_file": str(questions_file),
            "questions_sha256": file_sha256(questions_file),
            **timing.provenance(len(questions)),
        }
        summary = f"wrote {output}: {len(questions)} questions in {timing.wall:.1f} s"
        return FinishedShard(frame, provenance, summary)

    key = opinion_shard_key(shard, model_info, scoring, questions_file, detected)
    return run_shard(options, key, ShardWork(ask, finish), output)
