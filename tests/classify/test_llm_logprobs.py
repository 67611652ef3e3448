"""Method logprobs of LLM classifiers (classifiers.<c>.method: logprobs): the pure parts worked
by hand — the answer tokens, p = P(yes) / (P(yes) + P(no)), the threshold — and what the method
changes in the config, the recorded settings, the store key and the plan. The real vLLM server
run is in test_llm_classifier.py (it shares that module's judged run)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from conftest import REPO, scenario_config, validated_config

from affalign.classify import PromptTemplateError, check_template, llm_classifier_settings
from affalign.classify.llm import (
    LOGPROBS_METHOD,
    METHOD,
    NO_FORMS,
    YES_FORMS,
    Judge,
    affect_frame,
    answer_tokens,
    label_flags,
    store_key,
    yes_probability,
)
from affalign.classify.template import render_question
from affalign.config import ConfigError, check_config, validate_config
from affalign.config.plan import plan_classification

YES_NO = REPO / "resources" / "classifier_prompts" / "yes-no.txt"
LABELS_PROMPT = REPO / "resources" / "classifier_prompts" / "labels.txt"


def test_p_is_the_yes_share_of_the_yes_and_no_mass_summed_over_spellings():
    # yes: ids 1 and 2 with probabilities 0.2 and 0.1; no: id 3 with 0.1; id 9 (another
    # token, 0.6) is not an answer. p = 0.3 / (0.3 + 0.1) = 0.75.
    logprobs = {1: math.log(0.2), 2: math.log(0.1), 3: math.log(0.1), 9: math.log(0.6)}
    assert yes_probability(logprobs, [1, 2], [3]) == pytest.approx(0.75)
    # Taking the largest spelling instead of the sum would give 0.2 / 0.3.
    assert yes_probability(logprobs, [1, 2], [3]) != pytest.approx(2 / 3)
    assert yes_probability(logprobs, [3], [1, 2]) == pytest.approx(0.25)


def test_p_stays_exact_when_both_answers_are_very_unlikely():
    # exp(-800) underflows to 0; the ratio does not: e^-800 / (e^-800 + e^-801) = 1 / (1 + e^-1).
    assert yes_probability({1: -800.0, 2: -801.0}, [1], [2]) == pytest.approx(1 / (1 + math.exp(-1)))
    # One answer at probability 0 (vLLM writes -inf as -9999.0): p is 0 or 1 exactly.
    assert yes_probability({1: -9999.0, 2: -3.0}, [1], [2]) == 0.0
    assert yes_probability({1: -3.0, 2: -math.inf}, [1], [2]) == 1.0


@pytest.mark.parametrize(
    "logprobs",
    [
        {1: -1.0},  # a requested token missing
        {1: -9999.0, 2: -9999.0},  # both answers at probability 0: nothing to read
        {1: float("nan"), 2: -1.0},
        {},
    ],
)
def test_an_answer_that_cannot_be_read_is_none_never_a_guess(logprobs):
    assert yes_probability(logprobs, [1], [2]) is None


def test_a_label_is_given_at_or_above_the_threshold():
    assert label_flags([0.2, 0.5, 0.50001, 0.9], 0.5) == [False, True, True, True]
    frame = affect_frame(["a", "b", "c"], [{"x": 0.7}, {"x": 0.3}, None], ["x"], threshold=0.3)
    assert frame["post_id"].to_list() == ["a", "b"]  # the unparsed post is left out
    assert frame["p_x"].to_list() == [0.7, 0.3] and frame["y_x"].to_list() == [True, True]
    # Without a threshold the answers are the judge's booleans (structured), p 1.0 or 0.0.
    booleans = affect_frame(["a"], [{"x": False}], ["x"])
    assert booleans["p_x"].to_list() == [0.0] and booleans["y_x"].to_list() == [False]


def test_answer_tokens_are_the_first_tokens_after_the_anchor():
    # A tokenizer with whole-word yes/Yes/no/No and one that puts the space in a token of its
    # own (" yes" -> [7, 10, ...]): that token begins both answers and is dropped.
    prefix = [5, 6]
    encoded = {
        "yes": [5, 6, 10],
        " yes": [5, 6, 7, 10],
        "Yes": [5, 6, 11],
        " Yes": [5, 6, 7, 11],
        "no": [5, 6, 20, 21],  # split: its first token stands for it
        " no": [5, 6, 7, 20, 21],
        "No": [5, 6, 22],
        " No": [4, 22],  # changes the anchor's tokens: skipped
    }
    tokens = answer_tokens(prefix, encoded)
    assert tokens.yes == (10, 11) and tokens.no == (20, 22)
    assert tokens.forms == {"yes": 10, "Yes": 11, "no": 20, "No": 22}
    assert tokens.split == ("no",)
    assert tokens.ids == [10, 11, 20, 22]


def test_a_tokenizer_without_a_token_that_tells_yes_from_no_is_refused():
    # Every spelling begins with the same token: nothing tells the answers apart.
    encoded = {form: [1, 9, 2] for form in (*YES_FORMS, *NO_FORMS)}
    with pytest.raises(ValueError, match="cannot read its answers"):
        answer_tokens([1], encoded)


def test_the_question_template_is_checked_and_filled_per_method():
    template = YES_NO.read_text()
    check_template(template, method="logprobs")
    with pytest.raises(PromptTemplateError, match=r"\{labels\}"):
        check_template(template, method="structured")
    with pytest.raises(PromptTemplateError, match=r"\{label\} and \{definition\}"):
        check_template(LABELS_PROMPT.read_text(), method="logprobs")
    # One pass: a placeholder written in a definition or a post stays text.
    question = render_question("{label}: {definition} | {post}", "joy", "says {post}", "a {label} post")
    assert question == "joy: says {post} | a {label} post"


def judge_config(**judge) -> dict:
    config = scenario_config("llm-classifier")
    name = next(n for n, spec in config["classifiers"].items() if spec["type"] == "llm")
    config["classifiers"][name] = {
        key: value for key, value in config["classifiers"][name].items() if key != "prompt"
    } | judge
    return config, name


def test_the_method_chooses_the_default_prompt_and_threshold():
    config, name = judge_config()
    structured = validated_config(config)["classifiers"][name]
    assert structured["method"] == "structured" and "threshold" not in structured
    assert structured["prompt"] == "resources/classifier_prompts/labels.txt"
    config, name = judge_config(method="logprobs")
    logprobs = validated_config(config)["classifiers"][name]
    assert logprobs["prompt"] == "resources/classifier_prompts/yes-no.txt" and logprobs["threshold"] == 0.5


def test_config_checks_refuse_a_threshold_without_logprobs_and_a_template_of_the_other_method(
    monkeypatch, tiny_llama
):
    monkeypatch.chdir(REPO)

    def with_a_model_on_disk(config: dict) -> dict:
        # The scenario's model folder exists only where `make prepare-model` ran.
        for entry in config["models"].values():
            entry["path"] = str(tiny_llama)
        return config

    config, _ = judge_config(threshold=0.7)
    with pytest.raises(ConfigError, match="threshold applies to method logprobs only"):
        check_config(validated_config(with_a_model_on_disk(config)), "study.yaml")
    config, _ = judge_config(method="logprobs", prompt=str(LABELS_PROMPT))
    with pytest.raises(ConfigError, match=r"lacks \{label\} and \{definition\}"):
        check_config(validated_config(with_a_model_on_disk(config)), "study.yaml")
    config, _ = judge_config(method="logprobs", threshold=1.5)
    with pytest.raises(ConfigError, match="threshold"):
        validate_config(config, "study.yaml")


def settings_of(monkeypatch, **judge) -> tuple[dict, str]:
    monkeypatch.chdir(REPO)  # the prompt file's hash, as the workflow reads it
    config, name = judge_config(**judge)
    config = validated_config(config)
    identity = SimpleNamespace(
        source="resources/models/SmolLM2-135M-Instruct", revision=None, chat_template=True
    )
    return llm_classifier_settings(config, name, identity), name


def test_the_method_and_threshold_are_recorded_and_change_the_store_key(monkeypatch, tmp_path):
    structured, _ = settings_of(monkeypatch, prompt=str(LABELS_PROMPT.relative_to(REPO)))
    assert structured["method"] == METHOD and "threshold" not in structured and "max_tokens" in structured
    logprobs, name = settings_of(monkeypatch, method="logprobs")
    assert logprobs["method"] == LOGPROBS_METHOD and logprobs["threshold"] == 0.5
    assert "max_tokens" not in logprobs  # one token: max_tokens decides nothing
    stricter, _ = settings_of(monkeypatch, method="logprobs", threshold=0.8)
    assert stricter["threshold"] == 0.8
    # The same posts and prompt (a template of both methods) under another method or
    # threshold: another store key.
    posts, both = tmp_path / "posts.parquet", tmp_path / "both.txt"
    posts.write_bytes(b"posts")
    both.write_text("{labels} {label} {definition} {post}")
    keys = set()
    for settings in (logprobs, stricter, {**logprobs, "method": METHOD}):
        settings = {**settings, "prompt": str(both)}
        judge = Judge.from_settings(name, settings)
        keys.add(store_key(judge, settings, posts))
    assert len(keys) == 3
    judge = Judge.from_settings(name, stricter)
    assert (judge.method, judge.threshold) == ("logprobs", 0.8)


def test_the_plan_counts_one_request_per_post_and_label_for_logprobs():
    plans = {}
    for method in ("structured", "logprobs"):
        config, name = judge_config(method=method)
        config = validated_config(config)
        config["plan"] = {**config["plan"], "model_sizes_b": {config["classifiers"][name]["model"]: 1}}
        (plans[method],) = plan_classification(config, REPO / "no-such-workdir")
    labels = len(config["classifiers"][name]["labels"])
    assert plans["structured"].posts == plans["logprobs"].posts > 0
    assert plans["structured"].requests == plans["structured"].posts
    assert plans["logprobs"].requests == labels * plans["logprobs"].posts
    # One answer token per logprobs request; max_tokens per structured one.
    assert plans["logprobs"].max_output_tokens == plans["logprobs"].requests
    assert plans["structured"].max_output_tokens == plans["structured"].posts * 96


def test_an_unreadable_label_is_asked_again_once_then_its_post_is_unparsed(tmp_path):
    # A stub server in place of vLLM: answers a real server does not give (a requested token
    # missing, both answers at probability 0, a refused question), per post and label, in the
    # order they are asked. The tokenizer: "Answer:" is [1, 2]; yes 10, Yes 11, no 20, No 21,
    # and a leading space is token 7 of its own (it begins yes and no alike: dropped).
    import json

    import polars as pl
    from aiohttp import web
    from http_servers import StubEndpoint, stub_service_options

    from affalign.classify.llm import classify_files_through_service
    from affalign.io import file_sha256, read_provenance

    words = {"yes": 10, "Yes": 11, "no": 20, "No": 21}

    def tokenize(text: str) -> list[int]:
        rest = text.removeprefix("Answer:")
        return [1, 2, *([7] if rest.startswith(" ") else []), *([words[rest.strip()]] if rest else [])]

    def answer(yes: float, yes_cap: float, no: float, no_cap: float | None = None) -> dict:
        values = {10: yes, 11: yes_cap, 20: no, 21: no_cap}
        return {k: (math.log(v) if v > 0 else -9999.0) for k, v in values.items() if v is not None}

    script = {
        ("post-0", "anger"): [answer(0.3, 0.1, 0.1, 0.1)],  # p = 0.4 / 0.6
        ("post-0", "joy"): [answer(0.1, 0.1, 0.4, 0.4)],  # p = 0.2 / 1.0
        ("post-1", "anger"): [answer(0.3, 0.1, 0.1), answer(0.1, 0.1, 0.1, 0.1)],  # No missing, then read
        ("post-1", "joy"): [answer(0.5, 0.0, 0.0, 0.5)],  # p = 0.5
        ("post-2", "anger"): [answer(0, 0, 0, 0)],  # twice nothing to read: unparsed
        ("post-2", "joy"): [answer(0.1, 0.1, 0.1, 0.1)],
        ("post-3", "anger"): [answer(0.1, 0.1, 0.1, 0.1)],
        ("post-3", "joy"): [400],  # refused: unparsed
    }

    async def handler(request, seen):
        if request.path == "/health":
            return web.Response(text="ok")
        body = seen[-1].body
        if request.path == "/tokenize":
            return web.json_response({"tokens": tokenize(body["prompt"])})
        prompt = body["messages"][0]["content"]
        key = next(k for k in script if f"Post: {k[0]}" in prompt and f"Label: {k[1]}" in prompt)
        given = script[key].pop(0) if len(script[key]) > 1 else script[key][0]
        if given == 400:
            return web.Response(status=400, text="This model's maximum context length is 512 tokens")
        tops = [{"token": f"token_id:{k}", "logprob": v} for k, v in given.items()]
        content = [{"token": "token_id:10", "logprob": -1.0, "top_logprobs": tops}]
        return web.json_response(
            {"choices": [{"message": {"content": "y"}, "logprobs": {"content": content}}]}
        )

    posts = tmp_path / "posts.parquet"
    pl.DataFrame({"post_id": ["a", "b", "c", "d"], "text": [f"post-{i}" for i in range(4)]}).write_parquet(
        posts
    )
    prompt = tmp_path / "question.txt"
    prompt.write_text("Label: {label} ({definition})\nPost: {post}\nAnswer:\n")
    labels = {"anger": "the writer is angry", "joy": "the writer is glad"}
    settings = {
        "model": "judge-model",
        "labels": labels,
        "prompt": str(prompt),
        "prompt_sha256": file_sha256(prompt),
        "chat": True,
        "method": LOGPROBS_METHOD,
        "seed": 7,
        "threshold": 0.5,
        "revision": None,
    }
    output = tmp_path / "out" / "affect.parquet"
    with StubEndpoint(handler) as stub:
        options = stub_service_options(stub, tmp_path, max_in_flight=3, store=tmp_path / "store")
        totals = classify_files_through_service("judge", settings, [posts], [output], options)
        asked = [s.body for s in stub.seen if s.path == "/v1/chat/completions"]
    assert totals == {"posts": 4, "unparsed": 2, "retries": 2}
    assert len(asked) == 8 + 2  # a request per post and label, and the two retries
    # The opinion stage's exact request: the answer tokens by id, one token, temperature 0.
    assert {json.dumps(b["logprob_token_ids"]) for b in asked} == {"[10, 11, 20, 21]"}
    assert {(b["max_tokens"], b["temperature"], b["seed"]) for b in asked} == {(1, 0.0, 7)}
    # The template filled per label, its trailing newline gone: the answer follows "Answer:".
    assert "Label: joy (the writer is glad)\nPost: post-0\nAnswer:" in [
        b["messages"][0]["content"] for b in asked
    ]
    frame = pl.read_parquet(output)
    assert frame["post_id"].to_list() == ["a", "b"]
    assert frame["p_anger"].to_list() == pytest.approx([0.4 / 0.6, 0.5])
    assert frame["p_joy"].to_list() == pytest.approx([0.2, 0.5])
    assert frame["y_anger"].to_list() == [True, True] and frame["y_joy"].to_list() == [False, True]
    info = read_provenance(output)
    assert info["unparsed_post_ids"] == ["c", "d"] and info["retries"] == 2 and info["requests"] == 10
    assert info["method"] == LOGPROBS_METHOD and info["threshold"] == 0.5
    assert (info["yes_token_ids"], info["no_token_ids"]) == ([10, 11], [20, 21])
    assert info["answer_tokens"] == {"yes": 10, "Yes": 11, "no": 20, "No": 21}
    assert any("maximum context length" in example for example in info["unparsed_examples"])
