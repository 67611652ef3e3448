"""LLM classifiers (classifiers.<c>.type: llm): a served model as the judge, one constrained
request per post through the real vLLM CPU server; swaps of prompt or labels reclassify only."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, demo_config, job_counts, run_snakemake, validated_config, write_config
from tiny_models import tiny_engine

from affalign.classify import PromptTemplateError, check_template, render_prompt
from affalign.classify.llm import METHOD, label_pattern, label_schema, parse_answer
from affalign.config import ConfigError, check_config
from affalign.io import file_sha256
from affalign.io.parquet import read_provenance

LABELS = {"anger": "the writer is angry or outraged", "joy": "the writer is happy or glad"}
DEFAULT_PROMPT = REPO / "resources" / "classifier_prompts" / "labels.txt"


def test_answers_are_exactly_one_boolean_per_label():
    labels = list(LABELS)
    assert parse_answer('{"anger": true, "joy": false}', labels) == {"anger": True, "joy": False}
    assert parse_answer('{"joy":false,"anger":false}', labels) == {"anger": False, "joy": False}
    for bad in [
        '{"anger": true}',
        '{"anger": true, "joy": 1}',
        '{"anger": true, "joy": false, "x": true}',
        '{"anger": tru',
        "",
        None,
        "[true, false]",
        '{"anger": "true", "joy": false}',
    ]:
        assert parse_answer(bad, labels) is None, bad
    schema = label_schema(labels)
    assert schema["required"] == labels and schema["additionalProperties"] is False
    assert all(schema["properties"][label] == {"type": "boolean"} for label in labels)


def test_the_constraint_admits_exactly_the_compact_answers_of_the_schema():
    import itertools
    import re

    labels = ["anger", "care.virtue", "x-y"]
    pattern = label_pattern(labels)
    for values in itertools.product([True, False], repeat=3):
        answer = json.dumps(dict(zip(labels, values, strict=True)), separators=(",", ":"))
        assert re.fullmatch(pattern, answer) and parse_answer(answer, labels) is not None
    assert not re.fullmatch(pattern, '{"anger":true,"careXvirtue":true,"x-y":false}')
    assert not re.fullmatch(pattern, '{"anger": true,"care.virtue":true,"x-y":false}')


def test_prompt_is_filled_by_plain_replacement():
    template = DEFAULT_PROMPT.read_text()
    check_template(template)
    prompt = render_prompt(template, LABELS, "masks {are} {labels} great")
    assert "- anger: the writer is angry or outraged\n- joy: the writer is happy or glad" in prompt
    assert "masks {are} {labels} great" in prompt
    with pytest.raises(PromptTemplateError, match=r"\{post\}"):
        check_template("Labels: {labels}")


def test_a_placeholder_inside_a_definition_stays_text():
    labels = {"quote": "the writer quotes a {post} of someone else"}
    prompt = render_prompt("Labels:\n{labels}\nPost: {post}", labels, "I agree")
    assert prompt == "Labels:\n- quote: the writer quotes a {post} of someone else\nPost: I agree"


def llm_classifier(model: str, prompt: str | Path = DEFAULT_PROMPT, labels=LABELS) -> dict:
    return {"type": "llm", "model": model, "labels": dict(labels), "prompt": str(prompt)}


def test_config_checks_the_judge_and_the_prompt(study, tmp_path):
    workdir, config = study
    judge = next(iter(config["models"]))
    config["classifiers"] = {"judge": llm_classifier(judge)}
    checked = validated_config(config)
    assert checked["classifiers"]["judge"]["max_tokens"] == 256
    check_config(checked, "study.yaml", workdir)
    with pytest.raises(ConfigError, match="not a model of models"):
        check_config(
            {**checked, "classifiers": {"judge": {**checked["classifiers"]["judge"], "model": "nope"}}},
            "study.yaml",
            workdir,
        )
    broken = tmp_path / "broken.txt"
    broken.write_text("Post: {post}\n")
    with pytest.raises(ConfigError, match=r"lacks \{labels\}"):
        check_config(
            {**checked, "classifiers": {"judge": llm_classifier(judge, broken)}}, "study.yaml", workdir
        )


# --- End to end: the tiny random Llama generates and judges through the real CPU server. ---

TOPIC = "mask-mandates"
N_PER_SHARD = 3


def llm_study(model_dir: Path, prompt: Path) -> dict:
    config = demo_config()
    config.pop("opinions", None)
    config["models"] = {
        "tiny-chat": {"path": str(model_dir), "kind": "instruct", "engine": tiny_engine(max_model_len=512)}
    }
    covid = config["issues"]["covid-19"]
    covid["topics"] = {TOPIC: covid["topics"][TOPIC]}
    config["issues"] = {"covid-19": covid}
    config["human"] = {"covid-19": config["human"]["covid-19"]}
    config["generation"].update(n_per_shard=N_PER_SHARD, max_tokens=8, max_in_flight=8)
    config["classifiers"] = {
        "nrc-emotion": {"type": "lexicon", "lexicon": "nrc-emotion"},
        # The tiny model's vocabulary is about a token per character: short answers, short prompt.
        "judge": {**llm_classifier("tiny-chat", prompt), "max_tokens": 48},
    }
    return config


GOLD_POSTS = 32


def write_gold(path: Path) -> Path:
    """A gold file of the judge's labels (made up: the run checks the path, not the judge)."""
    rows = [
        f"g{i},post number {i} about masks,{int(i % 3 == 0)},{int(i % 4 == 0)}" for i in range(GOLD_POSTS)
    ]
    path.write_text("post_id,text,anger,joy\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def judged_run(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("judged")
    prompt = workdir / "prompt.txt"
    prompt.write_text("Labels:\n{labels}\nPost: {post}\nJSON:")
    config = llm_study(tiny_llama, prompt)
    config["classifiers"]["judge"]["gold"] = str(write_gold(workdir / "gold.csv"))
    configfile = write_config(workdir / "study.yaml", config)
    result = run_snakemake(workdir, configfile=configfile)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-8000:]
    return workdir, config, prompt, result


@pytest.mark.slow
def test_llm_classifier_labels_every_post_through_the_server(judged_run):
    workdir, _, prompt, result = judged_run
    assert "classifies its own generations" in result.stderr
    affect_files = sorted((workdir / "results/classify/judge").rglob("*.parquet"))
    assert len(affect_files) == 3 + 1 + 1  # three prompt types, one issue's human posts, gold
    for path in affect_files:
        frame = pl.read_parquet(path)
        labelled = [c for c in frame.columns if c != "post_id"]
        assert sorted(labelled) == sorted(
            [f"y_{label}" for label in LABELS] + [f"p_{label}" for label in LABELS]
        )
        info = read_provenance(path)
        source = Path(info["input"])
        posts = pl.read_parquet(source if source.is_absolute() else workdir / source)
        assert frame.height + info["unparsed"] == posts.height
        assert set(frame["post_id"]) <= set(posts["post_id"])
        assert info["method"] == METHOD and info["judge_model"] == "tiny-chat"
        assert info["label_definitions"] == LABELS and info["prompt_sha256"] == file_sha256(prompt)
        assert info["revision"] is None and info["model_source"]  # a local folder has no revision
        assert info["temperature"] == 0.0 and isinstance(info["seed"], int)
        assert info["judge_is_generator"] == ("generated" in path.parts)
        assert info["requests"] == posts.height + info["retries"]
    # The gold posts went through the judge's server too, and have per-label F1.
    gold = read_provenance(workdir / "results/classify/judge/gold.parquet")
    assert gold["posts"] == GOLD_POSTS and gold["judge_model"] == "tiny-chat"
    f1 = pl.read_csv(workdir / "results/align/judge/gold_f1.csv")
    assert f1["label"].to_list() == [*LABELS, "macro"]
    assert set(f1.filter(pl.col("label") != "macro")["n"]) == {GOLD_POSTS - gold["unparsed"]}
    # The constrained output parses: the random model's answers are valid JSON of the schema.
    human = read_provenance(workdir / "results/classify/judge/human/covid-19.parquet")
    assert human["posts"] > 20 and human["unparsed"] == 0, human
    assert (workdir / "results/align/judge/alignment.parquet").is_file()
    # The robustness table compares the judge with the lexicon on the labels both have.
    robustness = pl.read_csv(workdir / "results/align/robustness.csv")
    kappa = robustness.filter(pl.col("measure") == "kappa")
    assert sorted(kappa["label"].to_list()) == sorted(LABELS) and set(kappa["n"]) == {human["posts"]}
    # Posts a reader can judge: every classifier's labels side by side, from the label sets.
    samples = pl.read_csv(workdir / "results/align/label_samples.csv")
    assert set(samples["source"]) == {"human", "tiny-chat"}
    for given in samples["judge"]:
        assert given in ("none", "(unparsed)") or set(given.split(";")) <= set(LABELS), given


# Method logprobs through the same server: a second classifier of the same judge in the judged
# run's folder, only its affect files asked for (the structured judge's stay as they are).
QUESTION = "Post: {post}\nIs it {label} ({definition})? Answer:"
THRESHOLD = 0.4


@pytest.fixture(scope="module")
def logprobs_run(judged_run):
    workdir, config, _, _ = judged_run
    question = workdir / "question.txt"
    question.write_text(QUESTION)
    judge = {**llm_classifier("tiny-chat", question), "method": "logprobs", "threshold": THRESHOLD}
    changed = {**config, "classifiers": {**config["classifiers"], "judge-lp": judge}}
    configfile = write_config(workdir / "judge-lp.yaml", changed)
    # The structured judge's posts (its gold file is its own: judge-lp has none).
    structured = sorted(
        p for p in (workdir / "results/classify/judge").rglob("*.parquet") if p.name != "gold.parquet"
    )
    targets = [
        str(path.relative_to(workdir)).replace("classify/judge/", "classify/judge-lp/") for path in structured
    ]
    result = run_snakemake(workdir, "--", *targets, configfile=configfile)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-8000:]
    return workdir, changed, configfile, targets


@pytest.mark.slow
def test_logprobs_method_scores_every_label_of_every_post_through_the_server(logprobs_run):
    from affalign.classify.llm import LOGPROBS_METHOD, NO_FORMS, YES_FORMS

    workdir, _, _, targets = logprobs_run
    assert len(targets) == 3 + 1
    for target in targets:
        path = workdir / target
        frame = pl.read_parquet(path)
        info = read_provenance(path)
        assert sorted(frame.columns) == sorted(
            ["post_id", *(f"{k}_{label}" for label in LABELS for k in "py")]
        )
        source = Path(info["input"])
        posts = pl.read_parquet(source if source.is_absolute() else workdir / source)
        assert frame.height + info["unparsed"] == posts.height and frame.height > 0
        assert set(frame["post_id"]) <= set(posts["post_id"])
        for label in LABELS:
            p = frame[f"p_{label}"]
            assert p.is_between(0.0, 1.0).all() and p.is_not_null().all()
            assert frame[f"y_{label}"].to_list() == [value >= THRESHOLD for value in p.to_list()]
        # Real probabilities, not the 1.0/0.0 of structured answers.
        scores = [value for label in LABELS for value in frame[f"p_{label}"].to_list()]
        assert any(0.0 < value < 1.0 for value in scores)
        assert info["method"] == LOGPROBS_METHOD and info["classification_method"] == "logprobs"
        assert info["threshold"] == THRESHOLD and info["max_tokens"] == 1
        # The tiny tokenizer splits every spelling ("y" "e" "s"): the first tokens stand for them.
        yes, no = info["yes_token_ids"], info["no_token_ids"]
        assert yes and no and not set(yes) & set(no)
        assert set(info["answer_tokens"]) <= set(YES_FORMS + NO_FORMS)
        assert sorted(set(info["answer_tokens"].values())) == sorted(yes + no)
        assert info["requests"] == posts.height * len(LABELS) + info["retries"]
        assert info["judge_is_generator"] == ("generated" in path.parts)
    # Through the server's own tokenizer: " yes" begins with the space token that " no" also
    # begins with, so only the spellings without a space are left.
    assert set(info["answer_tokens"]) == {"yes", "Yes", "no", "No"}


JUDGE_JOBS_ONLY = {
    "serve_judge": 1,
    "classify_generated_llm": 1,
    "classify_human_llm": 1,
    "align": 1,
    "plot_alignment_heatmap": 1,
    "plot_comparisons": 1,
    "design": 1,
    "plot_design": 1,
    "robustness": 1,
    "label_samples": 1,
    "classify_gold_llm": 1,
    "gold_f1": 1,
    "all": 1,
    "total": 13,
}


@pytest.mark.slow
@pytest.mark.parametrize("change", ["prompt", "labels", "method", "nothing"])
def test_a_changed_prompt_or_label_set_reclassifies_only(judged_run, change):
    workdir, config, prompt, _ = judged_run
    judge = dict(config["classifiers"]["judge"])
    if change == "method":
        # logprobs asks a question per label: its template has placeholders of its own.
        question = workdir / "question-method.txt"
        question.write_text(QUESTION)
        judge.update(method="logprobs", prompt=str(question))
    elif change == "prompt":
        edited = workdir / "prompt-edited.txt"
        edited.write_text("Which labels fit?\n" + prompt.read_text())
        judge["prompt"] = str(edited)
    elif change == "labels":
        judge["labels"] = {**LABELS, "fear": "the writer is afraid"}
    changed = {**config, "classifiers": {**config["classifiers"], "judge": judge}}
    configfile = write_config(workdir / f"judge-{change}.yaml", changed)
    dry = run_snakemake(workdir, "--dry-run", configfile=configfile)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    if change == "nothing":
        assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout
    elif change == "labels":
        # The gold posts are read for the judge's labels.
        expected = {**JUDGE_JOBS_ONLY, "gold_posts": 1, "total": JUDGE_JOBS_ONLY["total"] + 1}
        assert job_counts(dry.stdout) == expected, dry.stdout
    else:
        assert job_counts(dry.stdout) == JUDGE_JOBS_ONLY, dry.stdout


def test_unreadable_answers_are_retried_once_then_counted_never_guessed(tmp_path):
    # A stub server in place of vLLM: the answers a real constrained server cannot be made to
    # give (unreadable text, a refused post), per post, in the order they are asked.
    from aiohttp import web
    from http_servers import StubEndpoint, stub_service_options

    from affalign.classify.llm import classify_files_through_service

    script = {
        "post-0": ['{"anger":true,"joy":false}'],
        "post-1": ["{", '{"anger":false,"joy":true}'],  # unreadable, then read on the retry
        "post-2": ["nonsense", '{"anger":true}'],  # twice unreadable: unparsed
        "post-3": [400],  # refused (e.g. longer than the judge's context): unparsed
    }

    async def handler(request, seen):
        if request.path == "/health":
            return web.Response(text="ok")
        body = seen[-1].body
        post = next(p for p in script if p in body["messages"][0]["content"])
        answer = script[post].pop(0) if len(script[post]) > 1 else script[post][0]
        if answer == 400:
            return web.Response(status=400, text="This model's maximum context length is 512 tokens")
        return web.json_response({"choices": [{"message": {"content": answer}, "finish_reason": "stop"}]})

    posts = tmp_path / "posts.parquet"
    pl.DataFrame({"post_id": ["a", "b", "c", "d"], "text": list(script)}).write_parquet(posts)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Labels:\n{labels}\nPost: {post}\n")
    settings = {
        "model": "judge-model",
        "labels": LABELS,
        "prompt": str(prompt),
        "prompt_sha256": file_sha256(prompt),
        "chat": True,
        "seed": 7,
        "max_tokens": 32,
        "revision": None,
    }
    output, store = tmp_path / "out" / "affect.parquet", tmp_path / "store"
    with StubEndpoint(handler) as stub:
        options = stub_service_options(stub, tmp_path, max_in_flight=2, store=store)
        totals = classify_files_through_service("judge", settings, [posts], [output], options)
        requests = [s for s in stub.seen if s.path == "/v1/chat/completions"]
        assert {(r.body["temperature"], r.body["seed"]) for r in requests} == {(0.0, 7)}
        assert all(r.body["structured_outputs"] == {"regex": label_pattern(list(LABELS))} for r in requests)
        assert len(requests) == 1 + 2 + 2 + 1
        # The same posts again: taken from the shard store, no request.
        output.unlink()
        classify_files_through_service("judge", settings, [posts], [output], options)
        assert len([s for s in stub.seen if s.path == "/v1/chat/completions"]) == len(requests)
    assert totals == {"posts": 4, "unparsed": 2, "retries": 2}
    frame = pl.read_parquet(output)
    assert frame["post_id"].to_list() == ["a", "b"]
    assert frame["y_anger"].to_list() == [True, False] and frame["y_joy"].to_list() == [False, True]
    info = read_provenance(output)
    assert info["unparsed"] == 2 and info["unparsed_post_ids"] == ["c", "d"] and info["retries"] == 2
    assert any("maximum context length" in example for example in info["unparsed_examples"])
    assert info["judge_is_generator"] is False and info["label_definitions"] == LABELS
