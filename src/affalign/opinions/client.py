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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from affalign.io import file_sha256, write_table
from affalign.opinions.positional import (
    Steering,
    context_text,
    opinion_prompt,
    option_distribution,
    parse_context_slug,
)
from affalign.opinions.survey import LETTERS, Question, read_questions
from affalign.service import ServiceClient, served_model_provenance

ANCHOR = "Answer:"
SEPARATORS = ("", " ")
MODES = ("exact", "top-k")
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
        if self.mode not in MODES:
            raise ValueError(f"unknown logprobs mode {self.mode!r}; use one of {MODES}")
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
        answer = await client.post(endpoint, body, f"question {index}")
        return answer_logprobs(answer, scoring.chat)

    return ids, list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))


def _variants(letter: str, ids: Mapping[str, list[int]], exact: bool) -> list[str | int]:
    return list(ids[letter]) if exact else [letter, f" {letter}"]


def write_opinion_shard(
    shard: OpinionShard,
    *,
    model_info: Mapping[str, Any],
    questions_file: str | Path,
    scoring: Scoring,
    service_file: str | Path,
    server_log: str | Path,
    output: str | Path,
    max_in_flight: int,
    server_start_timeout_s: float,
    request_timeout_s: float,
) -> pl.DataFrame:
    """Score every question of a survey topic under one context and write the shard."""
    method, steered_group = parse_context_slug(shard.context)
    questions: list[Question] = read_questions(questions_file)
    prompts = [opinion_prompt(q, method, shard.steering) for q in questions]
    letters = LETTERS[: max(len(q.options) for q in questions)]
    client = ServiceClient(
        service_file, server_log, max_in_flight=max_in_flight, request_timeout_s=request_timeout_s
    )
    service = client.wait(server_start_timeout_s)
    began = time.time()
    ids, answers = asyncio.run(client.run(lambda c: _score_all(c, prompts, letters, shard.model, scoring)))
    wall = time.time() - began
    exact = scoring.mode == "exact"
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
        **served_model_provenance(service, model_info),
        "kind": model_info.get("kind"),
        "chat_template": scoring.chat,
        "chat_template_kwargs": dict(scoring.chat_template_kwargs or {}),
        "scoring": {
            "mode": scoring.mode,
            "top_logprobs": None if exact else scoring.top_logprobs,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs_mode": "server default (raw_logprobs)",
            "letter_variants": ["A", " A"],
            "floor": None if exact else "log(min(p_min, remaining_mass / n_missing))",
        },
        "letter_token_ids": ids,
        "survey": shard.survey,
        "context": shard.context,
        "context_text": context_text(method, shard.steering),
        "questions_file": str(questions_file),
        "questions_sha256": file_sha256(questions_file),
        "shard_wall_s": round(wall, 3),
    }
    write_table(frame, output, provenance)
    print(f"[affalign] wrote {output}: {len(questions)} questions in {wall:.1f} s", flush=True)
    return frame
