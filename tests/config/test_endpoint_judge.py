"""An endpoint model (models.<m>.endpoint) as an LLM classifier's judge: no serve_judge, the
classification jobs call the endpoint holding their share of its resource, and the
pre-flight's request budget counts their requests. The real vLLM server classifying posts as
the endpoint: tests/service/test_endpoint_vllm.py."""

from __future__ import annotations

import csv
import json

import polars as pl
import pytest
from conftest import REPO, job_counts, run_snakemake, validated_config, write_config

from affalign.classify import llm_classifier_settings, requests_per_post
from affalign.config import (
    ConfigError,
    EndpointRunRefused,
    ModelIdentity,
    check_config,
    endpoint_specs,
    preflight_endpoints,
)
from affalign.config.endpoints import plan_endpoints, requests_planned
from affalign.config.plan import plan_classification

KEY_VARIABLE = "AFFALIGN_TEST_JUDGE_KEY"
ENDPOINT = {
    "base_url": "http://127.0.0.1:9/v1",  # nothing listens: these tests never reach it
    "model": "provider/judge-x",
    "request_budget": 100_000,
    "max_concurrency": 4,
    "shard_jobs": 2,
}
LABELS = {"anger": "the writer is angry", "joy": "the writer is happy"}
PROMPT = str(REPO / "resources" / "classifier_prompts" / "labels.txt")


def judged(config: dict, **endpoint) -> dict:
    """``config`` with an endpoint model ``hosted`` judging for classifier ``ep-judge``, and the
    first served model judging for ``served-judge``."""
    config = json.loads(json.dumps(config))
    served = next(iter(config["models"]))
    config["models"]["hosted"] = {"kind": "instruct", "endpoint": {**ENDPOINT, **endpoint}}
    config["classifiers"]["ep-judge"] = {"type": "llm", "model": "hosted", "labels": LABELS, "prompt": PROMPT}
    config["classifiers"]["served-judge"] = {
        "type": "llm",
        "model": served,
        "labels": LABELS,
        "prompt": PROMPT,
    }
    return validated_config(config)


def raw_rows(path: str) -> int:
    with open(path, newline="", encoding="utf-8") as table:
        return sum(1 for _ in csv.DictReader(table))


def test_an_endpoint_judge_has_no_server_job_and_its_jobs_hold_their_share(study):
    workdir, config = study
    config = judged(config)
    served = [name for name in config["models"] if name != "hosted"]
    # The endpoint judges for the served models' posts even when only they are selected.
    configfile = write_config(workdir / "study.yaml", config)
    only = f"only_models=[{','.join(served)}]"
    result = run_snakemake(workdir, "--dry-run", "--config", only, configfile=configfile)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    # One server for the served judge only, none for the endpoint.
    assert counts["serve_judge"] == 1
    assert "generate_endpoint" not in counts
    assert counts["classify_generated_llm_endpoint"] == len(served)
    assert counts["classify_human_llm_endpoint"] == len(config["issues"])
    assert counts["classify_generated_llm"] == len(served)
    assert "results/services/judge/hosted.json" not in result.stdout
    blocks = [b for b in result.stdout.split("\n\n") if "_llm_endpoint:" in b]
    assert len(blocks) == len(served) + len(config["issues"])
    for block in blocks:
        assert "endpoint_hosted=2" in block and "--service-file" not in block
        assert "--endpoint '{" in block and '"model": "hosted"' in block
        assert '"endpoint": {"base_url": "http://127.0.0.1:9/v1", "model": "provider/judge-x"}' in block
    # Served judges' jobs hold no share of the endpoint.
    served_blocks = [b for b in result.stdout.split("\n\n") if "rule classify_generated_llm:" in b]
    assert served_blocks and not any("endpoint_hosted" in b for b in served_blocks)


def test_an_endpoint_judge_passes_the_checks_and_is_checked_as_an_endpoint(study):
    workdir, config = study
    config = judged(config)
    check_config(config, "study.yaml", workdir)
    # Checked as the run's endpoint even when only_models leaves it out of generation.
    keyed = judged(config, api_key_env=KEY_VARIABLE)
    keyed["only_models"] = [name for name in keyed["models"] if name != "hosted"]
    with pytest.raises(ConfigError, match=f"environment variable {KEY_VARIABLE} is not set"):
        check_config(keyed, "study.yaml", workdir)


def test_the_settings_record_the_endpoint_identity_not_its_limits(study):
    _, config = study
    identity = ModelIdentity("endpoint provider/judge-x at http://127.0.0.1:9/v1", None, True)
    settings = llm_classifier_settings(judged(config), "ep-judge", identity)
    assert settings["endpoint"] == {"base_url": "http://127.0.0.1:9/v1", "model": "provider/judge-x"}
    assert settings["revision"] is None and settings["dtype"] is None
    assert list(settings)[-1] == "endpoint"
    limits = judged(config, max_concurrency=16, shard_jobs=4, request_budget=7, requests_per_minute=60)
    assert llm_classifier_settings(limits, "ep-judge", identity) == settings
    moved = judged(config, base_url="http://127.0.0.1:10/v1")
    assert llm_classifier_settings(moved, "ep-judge", identity)["endpoint"]["base_url"].endswith(":10/v1")
    # A served judge's recorded settings have no endpoint key (finished files keep their params).
    served = llm_classifier_settings(judged(config), "served-judge", identity)
    assert "endpoint" not in served


def test_requests_per_post_counts_one_per_label_for_logprobs():
    assert requests_per_post({"labels": LABELS}) == 1
    assert requests_per_post({"labels": LABELS, "method": "structured"}) == 1
    assert requests_per_post({"labels": {**LABELS, "fear": "afraid"}, "method": "logprobs"}) == 3


def test_the_budget_counts_the_classification_requests(study, monkeypatch):
    workdir, config = study
    monkeypatch.chdir(workdir)
    config = judged(config)
    endpoints = endpoint_specs(config, ["hosted"])
    model = next(iter(config["models"]))
    shards = sum(len(issue["topics"]) for issue in config["issues"].values()) * len(config["prompt_types"])
    n_per_shard = config["generation"]["n_per_shard"]
    covid = raw_rows(config["human"]["covid-19"]["path"])
    jobs = [
        ("classify_generated_llm_endpoint", {"classifier": "ep-judge", "model": model}),
        ("classify_human_llm_endpoint", {"classifier": "ep-judge", "issue": "covid-19"}),
        # A served judge's jobs send nothing to the endpoint.
        ("classify_human_llm", {"classifier": "served-judge", "issue": "covid-19"}),
    ]
    # Before ingestion: every row of the issue's input table (an upper bound).
    assert requests_planned(config, endpoints, jobs) == {"hosted": shards * n_per_shard + covid}
    # Ingested: its posts.
    ingested = workdir / "results" / "human" / "covid-19" / "posts.parquet"
    ingested.parent.mkdir(parents=True)
    pl.DataFrame({"post_id": ["a", "b", "c"], "text": ["x", "y", "z"]}).write_parquet(ingested)
    assert requests_planned(config, endpoints, jobs) == {"hosted": shards * n_per_shard + 3}
    # One request per post and label with method logprobs.
    logprobs = json.loads(json.dumps(config))
    logprobs["classifiers"]["ep-judge"]["method"] = "logprobs"
    assert requests_planned(logprobs, endpoints, jobs) == {"hosted": (shards * n_per_shard + 3) * len(LABELS)}
    # Over the budget: the run does not start.
    tight = judged(json.loads(json.dumps(config)), request_budget=shards * n_per_shard)
    with pytest.raises(EndpointRunRefused, match=r"would send \d+ requests"):
        preflight_endpoints(tight, endpoint_specs(tight, ["hosted"]), jobs, log=lambda line: None)


def test_the_plan_counts_the_judge_requests_of_affect_files_not_made(study):
    from affalign.opinions import read_questions

    workdir, config = study
    config = judged(config)
    models = list(config["models"])  # the endpoint's own posts are judged too
    shards = sum(len(issue["topics"]) for issue in config["issues"].values()) * len(config["prompt_types"])
    n_per_shard = config["generation"]["n_per_shard"]
    opinions = config["opinions"]
    contexts = sum(1 if method == "default" else len(opinions["groups"]) for method in opinions["contexts"])
    questions = sum(len(read_questions(survey["questions"])) for survey in opinions["surveys"].values())
    human = sum(raw_rows(table["path"]) for table in config["human"].values())
    own = shards * n_per_shard + contexts * questions
    (plan,) = plan_endpoints(config, workdir)
    assert plan.requests == own + len(models) * shards * n_per_shard + human
    assert plan.classify_jobs_to_run == len(models) + len(config["issues"])
    done = workdir / "results" / "classify" / "ep-judge" / "human" / "covid-19.parquet"
    done.parent.mkdir(parents=True)
    done.write_bytes(b"")
    (after,) = plan_endpoints(config, workdir)
    assert after.requests == plan.requests - raw_rows(config["human"]["covid-19"]["path"])
    assert after.classify_jobs_to_run == plan.classify_jobs_to_run - 1
    # No GPU job is planned for the endpoint judge, as there is one for the served judge.
    planned = [job.classifier for job in plan_classification(config, workdir)]
    assert "served-judge" in planned and "ep-judge" not in planned
    # A gold file: one more job, its posts' requests, until its affect file is made.
    gold = workdir / "gold.csv"
    gold.write_text("post_id,text,anger,joy\n" + "".join(f"g{i},post {i},1,0\n" for i in range(33)))
    config["classifiers"]["ep-judge"]["gold"] = str(gold)
    (golden,) = plan_endpoints(config, workdir)
    assert golden.requests == after.requests + 33
    assert golden.classify_jobs_to_run == after.classify_jobs_to_run + 1
    (workdir / "results" / "classify" / "ep-judge" / "gold.parquet").write_bytes(b"")
    assert plan_endpoints(config, workdir)[0] == after


def test_a_logprobs_judge_behind_an_endpoint_without_tokenize_stops_the_run_before_it_starts(
    study, monkeypatch
):
    # A hosted API that lacks vLLM's /tokenize: a real vLLM server has it, so a stub stands in
    # for such an API.
    from aiohttp import web
    from http_servers import StubEndpoint

    workdir, config = study
    monkeypatch.chdir(workdir)

    async def handler(request, seen):
        if request.path == "/v1/models":
            return web.json_response(
                {"object": "list", "data": [{"id": "provider/judge-x", "owned_by": "stub"}]}
            )
        return web.json_response({"error": "not found"}, status=404)

    with StubEndpoint(handler) as stub:
        hosted = judged(config, base_url=f"{stub.url}/v1")
        hosted["classifiers"]["ep-judge"]["method"] = "logprobs"
        hosted["classifiers"]["ep-judge"]["prompt"] = str(
            REPO / "resources" / "classifier_prompts" / "yes-no.txt"
        )
        hosted = validated_config(hosted)
        jobs = [("classify_human_llm_endpoint", {"classifier": "ep-judge", "issue": "covid-19"})]
        with pytest.raises(
            EndpointRunRefused, match=r"classifiers\.ep-judge: the endpoint judge hosted .*/tokenize"
        ):
            preflight_endpoints(hosted, endpoint_specs(hosted, ["hosted"]), jobs, log=lambda line: None)
        asked = [s.path for s in stub.seen if s.path != "/v1/models"]
    assert asked and all(path.endswith("/tokenize") for path in asked)
    # A structured judge is not probed: its jobs need neither. A fresh stub, because the
    # refused probe's other /tokenize requests may still arrive at the first one.
    with StubEndpoint(handler) as stub:
        structured = judged(config, base_url=f"{stub.url}/v1")
        preflight_endpoints(structured, endpoint_specs(structured, ["hosted"]), jobs, log=lambda line: None)
        assert [s.path for s in stub.seen if s.path != "/v1/models"] == []
