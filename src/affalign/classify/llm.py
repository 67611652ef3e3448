"""A served language model as a multi-label classifier (``classifiers.<c>.type: llm``).

Two methods (``classifiers.<c>.method``). ``structured`` (the default): each post is one
request to the judge model's server (through the one
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

``logprobs``: each post and label is one request, the yes/no question of the template
(``{label}``, ``{definition}``, ``{post}``; trailing whitespace removed, so the answer's
first token follows the template's last word) asked for one token at temperature 0 with the
exact log-probabilities of the yes and no tokens (the opinion stage's request:
``logprob_token_ids``, see :mod:`affalign.opinions`). ``p_<label>`` = P(yes) / (P(yes) +
P(no)), each summed over the tokens of ``yes``, `` yes``, ``Yes``, `` Yes`` (and the same of
``no``) that the judge's tokenizer gives right after ``Answer:`` (the first token of a form
it splits; a token that begins both a yes and a no form tells nothing and is dropped);
``y_<label>`` = ``p >= threshold``. A label whose answer lacks a requested token, or gives
both answers probability 0, is asked again once; a second failure leaves the post out as
unparsed, as in ``structured`` mode.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from affalign.classify.labels import label_column, score_column
from affalign.classify.template import check_template, render_prompt, render_question
from affalign.io import content_sha256, file_sha256, read_provenance
from affalign.opinions import ANCHOR, CLAMPED_LOGPROB, Scoring, answer_logprobs, logprob_request
from affalign.service import (
    ConsumerOptions,
    EndpointClient,
    EndpointSpec,
    FinishedShard,
    RequestRejected,
    ServiceClient,
    ServiceUnavailable,
    ShardWork,
    Timing,
    run_shard,
)

METHOD = "structured-output: JSON object of one boolean per label (regex-constrained)"
# The recorded method of classifiers.<c>.method: logprobs (in the settings, hence the store
# key: a change of the rule below reclassifies).
LOGPROBS_METHOD = (
    "logprobs: one request per post and label; p = P(yes) / (P(yes) + P(no)) of the next token, "
    "each summed over the first tokens of yes, ' yes', Yes, ' Yes' (no, ' no', No, ' No') after 'Answer:'"
)
# classifiers.<c>.method -> the method recorded in the settings and provenance.
METHODS = {"structured": METHOD, "logprobs": LOGPROBS_METHOD}
# The spellings of each answer whose next-token probability counts (see LOGPROBS_METHOD).
YES_FORMS = ("yes", " yes", "Yes", " Yes")
NO_FORMS = ("no", " no", "No", " No")
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
class AnswerTokens:
    """The tokens whose next-token probabilities make the yes and the no of method logprobs:
    ``yes``/``no`` the distinct token ids (sorted), ``forms`` each spelling's token id, and
    ``split`` the spellings the tokenizer splits (their first token stands for them)."""

    yes: tuple[int, ...]
    no: tuple[int, ...]
    forms: dict[str, int]
    split: tuple[str, ...]

    @property
    def ids(self) -> list[int]:
        return sorted({*self.yes, *self.no})


def answer_tokens(prefix: Sequence[int], encoded: Mapping[str, Sequence[int]]) -> AnswerTokens:
    """The answer tokens from tokenizations: ``prefix`` the tokens of :data:`ANCHOR` alone,
    ``encoded`` per spelling of :data:`YES_FORMS` and :data:`NO_FORMS` the tokens of the
    anchor followed by it. A spelling's token is the first one it adds after the anchor's
    tokens (a spelling that changes them, or adds none, is skipped); a token that begins
    both a yes and a no spelling (a lone space) is dropped from both, as it tells nothing.
    Raises ValueError when no token is left for yes or for no."""
    prefix = list(prefix)
    forms: dict[str, int] = {}
    split: list[str] = []
    for form in (*YES_FORMS, *NO_FORMS):
        tokens = list(encoded[form])
        if len(tokens) <= len(prefix) or tokens[: len(prefix)] != prefix:
            continue
        forms[form] = int(tokens[len(prefix)])
        if len(tokens) > len(prefix) + 1:
            split.append(form)
    yes = {forms[f] for f in YES_FORMS if f in forms}
    no = {forms[f] for f in NO_FORMS if f in forms}
    shared = yes & no
    forms = {form: token for form, token in forms.items() if token not in shared}
    yes, no = yes - shared, no - shared
    if not yes or not no:
        raise ValueError(
            f"the judge's tokenizer gives no token that begins {'yes' if not yes else 'no'} and not also "
            f"{'no' if not yes else 'yes'} after {ANCHOR!r} (spellings {YES_FORMS + NO_FORMS}); method "
            "logprobs cannot read its answers"
        )
    return AnswerTokens(tuple(sorted(yes)), tuple(sorted(no)), forms, tuple(f for f in split if f in forms))


def _log_mass(logprobs: Mapping[int | str, float], ids: Sequence[int]) -> float:
    """log of the summed probability of ``ids`` (vLLM's clamp of -inf counts as -inf)."""
    values = [float(logprobs[i]) for i in ids]
    finite = [v for v in values if v > CLAMPED_LOGPROB]
    if not finite:
        return -math.inf
    top = max(finite)
    return top + math.log(math.fsum(math.exp(v - top) for v in finite))


def yes_probability(
    logprobs: Mapping[int | str, float], yes: Sequence[int], no: Sequence[int]
) -> float | None:
    """p = P(yes) / (P(yes) + P(no)) from natural-log next-token probabilities, each side
    summed over its token ids; None (an answer that cannot be read) when a token id is
    missing, a value is NaN, or both sides have probability 0 (-inf, or vLLM's -9999.0)."""
    wanted = [*yes, *no]
    if not yes or not no or any(i not in logprobs for i in wanted):
        return None
    if any(math.isnan(float(logprobs[i])) for i in wanted):
        return None
    log_yes, log_no = _log_mass(logprobs, yes), _log_mass(logprobs, no)
    if log_yes == -math.inf and log_no == -math.inf:
        return None
    # The logistic of the log-odds, written so that neither side overflows.
    difference = log_no - log_yes
    if difference >= 0:
        odds = math.exp(-difference)
        return odds / (1.0 + odds)
    return 1.0 / (1.0 + math.exp(difference))


def label_flags(probabilities: Sequence[float], threshold: float) -> list[bool]:
    """A label is given when its p reaches the threshold (``p >= threshold``)."""
    return [p >= threshold for p in probabilities]


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
    # classifiers.<c>.method (structured or logprobs) and, for logprobs, its threshold.
    method: str = "structured"
    threshold: float | None = None

    @classmethod
    def from_settings(cls, classifier: str, settings: Mapping[str, Any]) -> Judge:
        recorded = settings.get("method", METHOD)
        method = next((name for name, text in METHODS.items() if text == recorded), None)
        if method is None:
            raise ValueError(f"classifier {classifier}: unknown method {recorded!r}")
        template = Path(settings["prompt"]).read_text(encoding="utf-8")
        check_template(template, f"classifiers.{classifier}.prompt {settings['prompt']!r}", method)
        return cls(
            classifier=classifier,
            model=settings["model"],
            labels=dict(settings["labels"]),
            template=template,
            chat=bool(settings["chat"]),
            chat_template_kwargs=dict(settings.get("chat_template_kwargs") or {}),
            seed=int(settings["seed"]),
            max_tokens=int(settings.get("max_tokens", 1)),
            method=method,
            threshold=float(settings["threshold"]) if method == "logprobs" else None,
        )

    @property
    def scoring(self) -> Scoring:
        """The opinion stage's exact log-probability request, through the judge's template."""
        return Scoring(mode="exact", chat=self.chat, chat_template_kwargs=self.chat_template_kwargs or None)

    def question(self, label: str, post: str | None, served_name: str, token_ids: Sequence[int]):
        """Endpoint and body of the yes/no request of one label about one post."""
        prompt = render_question(self.template, label, self.labels[label], post).rstrip()
        endpoint, body = logprob_request(prompt, served_name, self.scoring, token_ids)
        body["seed"] = self.seed
        return endpoint, body

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


async def ask_with_one_retry(
    client: ServiceClient,
    endpoint: str,
    payload: Mapping[str, Any],
    what: str,
    read: Callable[[Mapping[str, Any]], tuple[Any | None, str]],
    refused: Callable[[RequestRejected], None],
    unread: Callable[[str], None],
) -> tuple[Any | None, int]:
    """One classification request, asked again once when ``read`` (body -> the value, or
    None, and what was read) cannot read its answer: (the value, or None; retries made, 0 or
    1). A request the server refuses with 400 (e.g. a post longer than the judge's context)
    goes to ``refused`` and gives None at once; any other refusal (a wrong model name, a lost
    key) is the whole job's problem and raises. A second unreadable answer goes to ``unread``."""
    for attempt in range(2):
        try:
            body = await client.post(endpoint, payload, what)
        except RequestRejected as error:
            if error.status != 400:
                raise
            refused(error)
            return None, attempt
        value, problem = read(body)
        if value is not None:
            return value, attempt
        if attempt == 1:
            unread(problem)
    return None, 1


async def classify_posts(
    client: ServiceClient, judge: Judge, texts: Sequence[str | None], served_name: str
) -> tuple[list[dict[str, bool] | None], int, list[str]]:
    """Each post's labels (None: unparsed after one retry), the number of retries and a few
    of the answers that could not be read."""
    labels = list(judge.labels)
    retries = 0
    examples: list[str] = []

    def note(text: str) -> None:
        if len(examples) < UNPARSED_EXAMPLES:
            examples.append(text)

    async def one(index: int, text: str | None) -> dict[str, bool] | None:
        nonlocal retries

        def read(body: Mapping[str, Any]) -> tuple[dict[str, bool] | None, str]:
            answer = judge.answer_text(body)
            return parse_answer(answer, labels), answer[:200]

        endpoint, payload = judge.payload(text, served_name)
        parsed, retried = await ask_with_one_retry(
            client,
            endpoint,
            payload,
            f"classification of post {index}",
            read,
            refused=lambda error: note(f"post {index}: {str(error)[:200]}"),
            unread=note,
        )
        retries += retried
        return parsed

    answers = await asyncio.gather(*(one(i, text) for i, text in enumerate(texts)))
    return list(answers), retries, examples


async def judge_answer_tokens(client: ServiceClient, served_name: str) -> AnswerTokens:
    """The answer tokens of the judge's own tokenizer, from its server's ``/tokenize`` (as the
    opinion stage finds its letters' tokens)."""

    async def tokens(text: str) -> list[int]:
        body = {"model": served_name, "prompt": text, "add_special_tokens": False}
        answer = await client.post("/tokenize", body, f"tokenize {text!r}")
        return list(answer["tokens"])

    forms = (*YES_FORMS, *NO_FORMS)
    prefix, *encoded = await asyncio.gather(*(tokens(ANCHOR + form) for form in ("", *forms)))
    return answer_tokens(prefix, dict(zip(forms, encoded, strict=True)))


async def classify_questions(
    client: ServiceClient, judge: Judge, texts: Sequence[str | None], served_name: str
) -> tuple[list[dict[str, float] | None], int, list[str], AnswerTokens]:
    """Method logprobs: each post's p per label (None: a label unread after one retry, or a
    refused request), the number of retries, a few of the answers that could not be read and
    the answer tokens used."""
    tokens = await judge_answer_tokens(client, served_name)
    retries = 0
    examples: list[str] = []

    def note(text: str) -> None:
        if len(examples) < UNPARSED_EXAMPLES:
            examples.append(text[:200])

    async def one(index: int, text: str | None, label: str) -> float | None:
        nonlocal retries

        def read(body: Mapping[str, Any]) -> tuple[float | None, str]:
            try:
                logprobs = answer_logprobs(body, judge.chat)
            except (ValueError, KeyError, IndexError, TypeError) as error:
                logprobs, problem = {}, str(error)
            else:
                problem = json.dumps({str(k): v for k, v in logprobs.items()})
            return yes_probability(logprobs, tokens.yes, tokens.no), f"post {index}, label {label}: {problem}"

        endpoint, payload = judge.question(label, text, served_name, tokens.ids)
        p, retried = await ask_with_one_retry(
            client,
            endpoint,
            payload,
            f"classification of post {index}, label {label}",
            read,
            refused=lambda error: note(f"post {index}, label {label}: {error}"),
            unread=note,
        )
        retries += retried
        return p

    labels = list(judge.labels)
    asked = [one(i, text, label) for i, text in enumerate(texts) for label in labels]
    flat = await asyncio.gather(*asked)
    answers: list[dict[str, float] | None] = []
    for i in range(len(texts)):
        row = flat[i * len(labels) : (i + 1) * len(labels)]
        answers.append(None if any(p is None for p in row) else dict(zip(labels, row, strict=True)))
    return answers, retries, examples, tokens


# The post a logprobs judge behind an endpoint is asked about before the run starts.
PROBE_POST = "I can't believe how long the wait was today."


def check_endpoint_judge(spec: EndpointSpec, judge: Judge) -> None:
    """Before the run: an endpoint judge of method logprobs answers through the endpoint as
    its jobs will ask it (the answer tokens from its ``/tokenize``, then one yes/no question
    per label about :data:`PROBE_POST` with those tokens' log-probabilities). Raises
    :class:`~affalign.service.ServiceUnavailable` saying what the endpoint lacks: a hosted
    API without vLLM's ``/tokenize`` or ``logprob_token_ids`` cannot take this method."""
    client = EndpointClient(spec, max_in_flight=1)
    client.wait()

    async def probe(client: ServiceClient):
        probabilities, _, examples, _ = await classify_questions(
            client, judge, [PROBE_POST], spec.served_model
        )
        return probabilities[0], examples

    try:
        probability, examples = asyncio.run(client.run(probe))
    except (ServiceUnavailable, ValueError) as error:
        raise ServiceUnavailable(
            f"{error}; method logprobs needs vLLM's /tokenize and logprob_token_ids"
        ) from None
    if probability is None:
        raise ServiceUnavailable(
            f"no readable yes/no log-probabilities for a test post ({'; '.join(examples) or 'no answer'}); "
            "method logprobs needs vLLM's /tokenize and logprob_token_ids"
        )


def affect_frame(
    post_ids: Sequence[str],
    answers: Sequence[Mapping[str, bool] | Mapping[str, float] | None],
    labels: Sequence[str],
    threshold: float | None = None,
):
    """The affect table of the parsed posts (unparsed ones left out). Without ``threshold``
    the answers are the judge's booleans (``p_`` 1.0 or 0.0); with it, each label's p
    (method logprobs: ``y_`` is ``p >= threshold``)."""
    kept = [
        (post_id, answer) for post_id, answer in zip(post_ids, answers, strict=True) if answer is not None
    ]
    columns: dict[str, pl.Series] = {"post_id": pl.Series([p for p, _ in kept], dtype=pl.String)}
    for label in labels:
        if threshold is None:
            flags = [bool(answer[label]) for _, answer in kept]
            scores = [1.0 if f else 0.0 for f in flags]
        else:
            scores = [float(answer[label]) for _, answer in kept]
            flags = label_flags(scores, threshold)
        columns[score_column(label)] = pl.Series(scores, dtype=pl.Float64)
        columns[label_column(label)] = pl.Series(flags, dtype=pl.Boolean)
    return pl.DataFrame(columns)


def store_key(judge: Judge, settings: Mapping[str, Any], source: str | Path) -> str:
    """SHA-256 of everything that decides an affect file: the posts file, the settings
    (judge source and revision, labels and definitions, method and its threshold, seed), the
    template's bytes."""
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

    logprobs = judge.method == "logprobs"

    async def ask(client: ServiceClient):
        served_name = client.served_name(judge.model)
        if logprobs:
            return await classify_questions(client, judge, table["text"].to_list(), served_name)
        return (*await classify_posts(client, judge, table["text"].to_list(), served_name), None)

    def finish(answered, client: ServiceClient, timing: Timing) -> FinishedShard:
        answers, retries, examples, tokens = answered
        wall = timing.wall
        frame = affect_frame(table["post_id"].to_list(), answers, labels, judge.threshold)
        unparsed = [p for p, a in zip(table["post_id"].to_list(), answers, strict=True) if a is None]
        # Structured: one request per post; logprobs: one per post and label (+ the tokenizations).
        asked = table.height * (len(labels) if logprobs else 1)
        if logprobs:
            method_fields = {
                "method": LOGPROBS_METHOD,
                "classification_method": "logprobs",
                "threshold": judge.threshold,
                "max_tokens": 1,
                "yes_token_ids": list(tokens.yes),
                "no_token_ids": list(tokens.no),
                "answer_tokens": dict(tokens.forms),
                "answer_forms_split": list(tokens.split),
                "tokenize_requests": 1 + len(YES_FORMS) + len(NO_FORMS),
            }
        else:
            method_fields = {
                "method": METHOD,
                "classification_method": "structured",
                "max_tokens": judge.max_tokens,
                "threshold": "the judge's boolean per label (structured output)",
                "label_schema": label_schema(labels),
                "constraint": {"regex": label_pattern(labels)},
            }
        provenance = {
            "stage": "classify",
            "classifier": classifier,
            "classifier_spec": {k: v for k, v in settings.items() if k != "chat_template_kwargs"},
            "classifier_version": f"{judge.model}@{settings.get('revision') or 'local'}",
            "classifier_source": settings.get("model_source"),
            "judge_model": judge.model,
            **client.provenance({"revision": settings.get("revision")}),
            "labels": labels,
            "label_definitions": dict(judge.labels),
            "prompt_file": settings["prompt"],
            "prompt_sha256": settings["prompt_sha256"],
            "temperature": 0.0,
            "seed": judge.seed,
            **method_fields,
            "judge_is_generator": own,
            "posts": table.height,
            "unparsed": len(unparsed),
            "unparsed_post_ids": unparsed,
            "unparsed_examples": examples,
            "retries": retries,
            "requests": asked + retries,
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
