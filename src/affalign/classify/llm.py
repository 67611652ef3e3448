"""A served language model as a multi-label classifier (``classifiers.<c>.type: llm``).

Each post is one request to the judge model's server (through the one
:class:`~affalign.service.ServiceClient`, with its in-flight limit and retries): the
prompt template (a file under ``resources/``) filled with the label definitions and the
post, temperature 0, a fixed seed, and the output constrained by vLLM's structured outputs
to a JSON object with one boolean per label (``structured_outputs: {"regex": ...}``, the
field vLLM 0.32's OpenAI-compatible server reads on chat and completion requests; the
expression is the label schema's compact form, see :func:`label_pattern`). A post
whose every label is false carries none (the align stage's ``none`` outcome).

An answer that is not exactly that object (a truncated or otherwise unreadable output) is
asked again once; a second failure (or a request the server refuses with HTTP 400, such as a
post longer than the judge's context) leaves the post out of the affect file — it is counted
(``unparsed``) and named in the provenance, never guessed. Affect files have the usual
columns (``post_id``, ``p_<label>``, ``y_<label>``; ``p_`` is 1.0 or 0.0) and are kept in
the shard store under the hash of everything that decides them: the posts, the prompt
file's bytes, labels and definitions, the judge's source and revision, the method.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from affalign.classify.labels import label_column, score_column
from affalign.classify.template import check_template, render_prompt
from affalign.io import content_sha256, file_sha256, read_provenance
from affalign.service import (
    ConsumerOptions,
    FinishedShard,
    RequestRejected,
    ServiceClient,
    ShardWork,
    Timing,
    run_shard,
)

METHOD = "structured-output: JSON object of one boolean per label (regex-constrained)"
# Unreadable answers kept in an affect file's provenance, to see what went wrong.
UNPARSED_EXAMPLES = 5


def label_schema(labels: Sequence[str]) -> dict[str, Any]:
    """The JSON schema every answer must meet: one required boolean per label, nothing else."""
    return {
        "type": "object",
        "properties": {label: {"type": "boolean"} for label in labels},
        "required": list(labels),
        "additionalProperties": False,
    }


def label_pattern(labels: Sequence[str]) -> str:
    """The objects :func:`label_schema` allows, written without whitespace, as a regular
    expression: ``{"a":(true|false),"b":(true|false)}``. vLLM 0.32 reads "no whitespace in
    JSON" only from the server's own configuration (its xgrammar and guidance backends
    ignore the request's ``disable_any_whitespace``), and a model under a JSON schema may
    fill its answer with whitespace until ``max_tokens`` cuts it off (the tiny test model
    does); the expression admits exactly one answer per label assignment."""
    # Labels are [A-Za-z0-9._-]: '.' is the one character to escape.
    fields = ",".join(f'"{label.replace(".", "[.]")}":(true|false)' for label in labels)
    return "\\{" + fields + "\\}"


def parse_answer(text: str | None, labels: Sequence[str]) -> dict[str, bool] | None:
    """The labels of an answer, or None unless it is exactly one boolean per label."""
    try:
        value = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(value, dict) or set(value) != set(labels):
        return None
    if not all(isinstance(value[label], bool) for label in labels):
        return None
    return {label: value[label] for label in labels}


@dataclass(frozen=True)
class Judge:
    """What determines an LLM classifier's answers (the rule's recorded params)."""

    classifier: str
    model: str
    labels: dict[str, str]
    template: str
    chat: bool
    chat_template_kwargs: dict[str, Any]
    seed: int
    max_tokens: int

    @classmethod
    def from_settings(cls, classifier: str, settings: Mapping[str, Any]) -> Judge:
        template = Path(settings["prompt"]).read_text(encoding="utf-8")
        check_template(template, f"classifiers.{classifier}.prompt {settings['prompt']!r}")
        return cls(
            classifier=classifier,
            model=settings["model"],
            labels=dict(settings["labels"]),
            template=template,
            chat=bool(settings["chat"]),
            chat_template_kwargs=dict(settings.get("chat_template_kwargs") or {}),
            seed=int(settings["seed"]),
            max_tokens=int(settings["max_tokens"]),
        )

    def payload(self, post: str | None, served_name: str) -> tuple[str, dict[str, Any]]:
        prompt = render_prompt(self.template, self.labels, post)
        body: dict[str, Any] = {
            "model": served_name,
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "seed": self.seed,
            "n": 1,
            # vLLM's structured outputs: the label schema's compact JSON, as a regular
            # expression (see label_pattern).
            "structured_outputs": {"regex": label_pattern(list(self.labels))},
        }
        if self.chat:
            body["messages"] = [{"role": "user", "content": prompt}]
            if self.chat_template_kwargs:
                body["chat_template_kwargs"] = dict(self.chat_template_kwargs)
            return "/v1/chat/completions", body
        body["prompt"] = prompt
        return "/v1/completions", body

    def answer_text(self, body: Mapping[str, Any]) -> str:
        choice = body["choices"][0]
        return (choice["message"]["content"] if self.chat else choice["text"]) or ""


async def classify_posts(
    client: ServiceClient, judge: Judge, texts: Sequence[str | None], served_name: str
) -> tuple[list[dict[str, bool] | None], int, list[str]]:
    """Each post's labels (None: unparsed after one retry), the number of retries and a few
    of the answers that could not be read."""
    labels = list(judge.labels)
    retries = 0
    examples: list[str] = []

    async def one(index: int, text: str | None) -> dict[str, bool] | None:
        nonlocal retries
        endpoint, payload = judge.payload(text, served_name)
        for attempt in range(2):
            try:
                body = await client.post(endpoint, payload, f"classification of post {index}")
            except RequestRejected as error:
                # This post's request is refused (400: e.g. longer than the judge's context):
                # the post is unparsed; any other refusal (a wrong model name, a lost key) is
                # the whole job's problem.
                if error.status != 400:
                    raise
                if len(examples) < UNPARSED_EXAMPLES:
                    examples.append(f"post {index}: {str(error)[:200]}")
                return None
            answer = judge.answer_text(body)
            parsed = parse_answer(answer, labels)
            if parsed is not None:
                return parsed
            if attempt == 0:
                retries += 1
            elif len(examples) < UNPARSED_EXAMPLES:
                examples.append(answer[:200])
        return None

    answers = await asyncio.gather(*(one(i, text) for i, text in enumerate(texts)))
    return list(answers), retries, examples


def affect_frame(post_ids: Sequence[str], answers: Sequence[dict[str, bool] | None], labels: Sequence[str]):
    """The affect table of the parsed posts (unparsed ones left out)."""
    kept = [
        (post_id, answer) for post_id, answer in zip(post_ids, answers, strict=True) if answer is not None
    ]
    columns: dict[str, pl.Series] = {"post_id": pl.Series([p for p, _ in kept], dtype=pl.String)}
    for label in labels:
        flags = [answer[label] for _, answer in kept]
        columns[score_column(label)] = pl.Series([1.0 if f else 0.0 for f in flags], dtype=pl.Float64)
        columns[label_column(label)] = pl.Series(flags, dtype=pl.Boolean)
    return pl.DataFrame(columns)


def store_key(judge: Judge, settings: Mapping[str, Any], source: str | Path) -> str:
    """SHA-256 of everything that decides an affect file: the posts file, the settings
    (judge source and revision, labels and definitions, method, seed), the template's bytes."""
    return content_sha256(
        {"posts": file_sha256(source), "settings": dict(settings), "template": judge.template}
    )


def classify_files_through_service(
    classifier: str,
    settings: Mapping[str, Any],
    inputs: Sequence[str | Path],
    outputs: Sequence[str | Path],
    options: ConsumerOptions,
    generator: str | None = None,
) -> dict[str, int]:
    """Classify each input's ``text`` column into the matching output through the judge's
    server, each file a shard of :func:`~affalign.service.run_shard` (one client for all);
    returns posts, unparsed and retries over the inputs classified (not taken from the store)."""
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    judge = Judge.from_settings(classifier, settings)
    client = options.client()
    own = generator is not None and generator == judge.model
    if own:
        print(
            f"[affalign] warning: classifier {classifier}: {judge.model} classifies its own generations "
            "(allowed; recorded as judge_is_generator in every affect file)",
            flush=True,
        )
    totals = {"posts": 0, "unparsed": 0, "retries": 0}
    for source, target in zip(inputs, outputs, strict=True):
        work = _affect_file(judge, settings, own, source, target, totals)
        run_shard(options, store_key(judge, settings, source), work, target, client)
    return totals


def _affect_file(
    judge: Judge,
    settings: Mapping[str, Any],
    own: bool,
    source: str | Path,
    target: str | Path,
    totals: dict[str, int],
) -> ShardWork:
    """The hooks of :func:`~affalign.service.run_shard` for one posts file and its affect
    file; ``totals`` counts what it classified."""
    classifier, labels = judge.classifier, list(judge.labels)
    table = pl.read_parquet(source, columns=["post_id", "text"])

    async def ask(client: ServiceClient):
        return await classify_posts(client, judge, table["text"].to_list(), client.served_name(judge.model))

    def finish(answered, client: ServiceClient, timing: Timing) -> FinishedShard:
        answers, retries, examples = answered
        wall = timing.wall
        frame = affect_frame(table["post_id"].to_list(), answers, labels)
        unparsed = [p for p, a in zip(table["post_id"].to_list(), answers, strict=True) if a is None]
        provenance = {
            "stage": "classify",
            "classifier": classifier,
            "classifier_spec": {k: v for k, v in settings.items() if k != "chat_template_kwargs"},
            "classifier_version": f"{judge.model}@{settings.get('revision') or 'local'}",
            "classifier_source": settings.get("model_source"),
            "judge_model": judge.model,
            **client.provenance({"revision": settings.get("revision")}),
            "method": METHOD,
            "labels": labels,
            "label_definitions": dict(judge.labels),
            "prompt_file": settings["prompt"],
            "prompt_sha256": settings["prompt_sha256"],
            "temperature": 0.0,
            "seed": judge.seed,
            "max_tokens": judge.max_tokens,
            "threshold": "the judge's boolean per label (structured output)",
            "judge_is_generator": own,
            "posts": table.height,
            "unparsed": len(unparsed),
            "unparsed_post_ids": unparsed,
            "unparsed_examples": examples,
            "label_schema": label_schema(labels),
            "constraint": {"regex": label_pattern(labels)},
            "retries": retries,
            "requests": table.height + retries,
            "wall_s": round(wall, 3),
            "posts_per_s": round(table.height / wall, 3) if wall > 0 else None,
            "input": str(source),
            "input_provenance": read_provenance(source),
        }
        totals["posts"] += table.height
        totals["unparsed"] += len(unparsed)
        totals["retries"] += retries
        summary = (
            f"{classifier}: {target}: {table.height} posts, {len(unparsed)} unparsed, "
            f"{retries} retried, {wall:.1f} s ({provenance['posts_per_s']} posts/s)"
        )
        return FinishedShard(frame, provenance, summary)

    return ShardWork(ask, finish)
