"""Endpoint models without a server: config checks, limits, pacing, budgets, error handling.

The failures a real vLLM server cannot be made to produce (403, 429 with Retry-After, an
endpoint without log-probabilities) come from :class:`http_servers.StubEndpoint`; the
real server's answers (401, both log-probability methods, limits measured on its side)
are in ``test_endpoint_vllm.py``.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp import web
from conftest import job_counts, run_snakemake, validated_config, write_config
from http_servers import StubEndpoint
from snakemake.exceptions import WorkflowError

from affalign.config.checks import ConfigError, check_endpoints, check_model_selection, selected_models
from affalign.opinions.client import NoLogprobs, Scoring, detect_logprob_support
from affalign.service import (
    EndpointClient,
    EndpointSpec,
    RequestPacer,
    RequestRejected,
    ServiceUnavailable,
    budget_problems,
    retry_after_seconds,
)

KEY_VARIABLE = "AFFALIGN_TEST_ENDPOINT_KEY"
KEY = "sk-test-0123456789abcdefSECRET"
ENDPOINT = {
    "base_url": "http://127.0.0.1:9/v1",  # nothing listens: these tests never reach it
    "model": "provider/model-x",
    "api_key_env": KEY_VARIABLE,
    "request_budget": 100_000,
    "max_concurrency": 4,
    "shard_jobs": 2,
}


def with_endpoint(config: dict, name: str = "hosted", **changes) -> dict:
    config = json.loads(json.dumps(config))
    config["models"][name] = {"kind": "instruct", "endpoint": {**ENDPOINT, **changes}}
    return validated_config(config)


def spec_at(url: str, **changes) -> EndpointSpec:
    fields = {"model": "hosted", "base_url": f"{url}/v1", "served_model": "model-x", "request_budget": 100}
    return EndpointSpec(**{**fields, "api_key_env": KEY_VARIABLE, **changes})


# --- Config -------------------------------------------------------------------------------


def test_an_endpoint_entry_gets_its_defaults_and_excludes_weights(study):
    _, config = study
    entry = with_endpoint(config)["models"]["hosted"]["endpoint"]
    assert entry["request_timeout_s"] == 600 and entry["logprobs"] == "auto"
    spec = EndpointSpec.from_config("hosted", {"endpoint": entry})
    assert (spec.max_concurrency, spec.shard_jobs, spec.job_concurrency) == (4, 2, 2)
    both = json.loads(json.dumps(config))
    both["models"]["hosted"] = {"kind": "instruct", "path": "x", "endpoint": ENDPOINT}
    with pytest.raises(WorkflowError):
        validated_config(both)
    no_budget = json.loads(json.dumps(config))
    no_budget["models"]["hosted"] = {
        "kind": "base",
        "endpoint": {k: v for k, v in ENDPOINT.items() if k != "request_budget"},
    }
    with pytest.raises(WorkflowError, match="request_budget"):
        validated_config(no_budget)


def test_a_missing_key_variable_is_an_error_before_any_job(study):
    _, config = study
    config = with_endpoint(config)
    with pytest.raises(ConfigError, match=f"the environment variable {KEY_VARIABLE} is not set"):
        check_endpoints(config, "study.yaml", environ={})
    check_endpoints(config, "study.yaml", environ={KEY_VARIABLE: KEY})
    # Leaving the endpoint out of the run leaves its key out of the checks.
    served = [name for name in config["models"] if name != "hosted"]
    check_endpoints({**config, "only_models": served}, "study.yaml", environ={})


def test_a_key_pasted_as_the_variable_name_or_into_the_url_is_refused_unrepeated(study):
    _, config = study
    pasted = with_endpoint(config, api_key_env=KEY)
    with pytest.raises(ConfigError, match="never the key itself") as refused:
        check_endpoints(pasted, "study.yaml", environ={})
    assert KEY not in str(refused.value)
    in_url = with_endpoint(config, base_url=f"https://user:{KEY}@api.example.org/v1")
    with pytest.raises(ConfigError, match="carries credentials") as refused:
        check_endpoints(in_url, "study.yaml", environ={KEY_VARIABLE: KEY})
    assert KEY not in str(refused.value)
    in_query = with_endpoint(config, base_url=f"https://api.example.org/v1?key={KEY}")
    with pytest.raises(ConfigError, match="carries credentials") as refused:
        check_endpoints(in_query, "study.yaml", environ={KEY_VARIABLE: KEY})
    assert KEY not in str(refused.value)


def test_limits_and_log_probabilities_are_checked(study):
    _, config = study
    environ = {KEY_VARIABLE: KEY}
    with pytest.raises(ConfigError, match=r"shard_jobs \(5\) exceeds max_concurrency \(4\)"):
        check_endpoints(with_endpoint(config, shard_jobs=5), "s", environ=environ)
    assert config.get("opinions"), "the demo study has a positional stage"
    with pytest.raises(ConfigError, match=r"logprobs is 'none'.*positional"):
        check_endpoints(with_endpoint(config, logprobs="none"), "s", environ=environ)
    without_opinions = {k: v for k, v in with_endpoint(config, logprobs="none").items() if k != "opinions"}
    check_endpoints(without_opinions, "s", environ=environ)


def test_only_models_selects_in_config_order_and_names_models_only(study):
    _, config = study
    config = with_endpoint(config)
    names = list(config["models"])
    assert list(selected_models({**config, "only_models": [names[2], names[0]]})) == [names[0], names[2]]
    assert list(selected_models(config)) == names
    with pytest.raises(ConfigError, match=r"only_models names \['nope'\], which are not models"):
        check_model_selection({**config, "only_models": ["nope"]}, "s")


# --- Limits across jobs and the pace within one -------------------------------------------


def test_shares_of_the_limits_never_add_up_to_more_than_the_endpoint_allows():
    # Snakemake runs at most floor(max_concurrency / share) jobs at once.
    for max_concurrency in range(1, 25):
        for shard_jobs in range(1, max_concurrency + 1):
            limits = {
                "max_concurrency": max_concurrency,
                "shard_jobs": shard_jobs,
                "requests_per_minute": 600,
            }
            spec = EndpointSpec("m", "http://h/v1", "m", 1, **limits)
            at_once = max_concurrency // spec.job_concurrency
            assert at_once >= shard_jobs
            assert at_once * spec.job_concurrency <= max_concurrency
            assert at_once * spec.job_requests_per_minute <= 600 + 1e-9
    assert EndpointSpec("gpt-4o.mini", "http://h/v1", "m", 1).resource == "endpoint_gpt_4o_mini"


def test_the_pacer_spaces_requests_and_never_bursts_after_a_pause():
    now = [100.0]
    pacer = RequestPacer(per_minute=120, clock=lambda: now[0])  # one every 0.5 s
    assert pacer.reserve() == pytest.approx(0.5)  # the first one waits one interval too
    assert pacer.reserve() == pytest.approx(1.0)
    assert pacer.reserve() == pytest.approx(1.5)
    now[0] += 60.0  # idle for a minute: the next starts at once, the one after waits again
    assert pacer.reserve() == 0.0
    assert pacer.reserve() == pytest.approx(0.5)


def test_retry_after_is_read_as_seconds_or_as_a_date():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    moment = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)
    before = (moment - timedelta(seconds=30)).timestamp()
    assert retry_after_seconds(format_datetime(moment, usegmt=True), now=before) == pytest.approx(30.0)


def test_budgets_name_each_endpoint_over_its_limit():
    specs = {"a": EndpointSpec("a", "http://h/v1", "x", 100), "b": EndpointSpec("b", "http://h/v1", "y", 10)}
    assert budget_problems({"a": 100, "b": 11}, specs) == [
        "models.b.endpoint: this run would send 11 requests to y at http://h/v1, more than its "
        "request_budget of 10"
    ]


def test_paths_map_onto_the_base_url_and_the_server_root():
    client = EndpointClient(EndpointSpec("m", "https://api.example.org/v1", "x", 1))
    assert client.address("/v1/chat/completions") == "https://api.example.org/v1/chat/completions"
    assert client.address("/tokenize") == "https://api.example.org/tokenize"
    other = EndpointClient(EndpointSpec("m", "https://example.org/api/openai", "x", 1))
    assert other.address("/v1/completions") == "https://example.org/api/openai/completions"
    assert EndpointSpec("m", "https://api.example.org:8443/v1", "x", 1).host == "https://api.example.org:8443"


# --- Failures a real server cannot be made to produce (stub endpoint) -----------------------

COMPLETION = {"choices": [{"text": "ok", "finish_reason": "stop"}], "system_fingerprint": "fp_1"}
MODELS = {"object": "list", "data": [{"id": "model-x", "owned_by": "stub", "created": 1}]}


def post_once(spec: EndpointSpec, monkeypatch, **limits) -> tuple[EndpointClient, dict]:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    client = EndpointClient(spec, **limits)
    client.wait()

    async def work(c):
        return await c.post("/v1/completions", {"model": "model-x", "prompt": "p"}, "request 0")

    return client, asyncio.run(client.run(work))


def test_429_waits_as_long_as_retry_after_asks(monkeypatch):
    async def handler(request, seen):
        if request.path == "/v1/models":
            return web.json_response(MODELS)
        posts = [s for s in seen if s.method == "POST"]
        if len(posts) == 1:
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "2"})
        return web.json_response(COMPLETION)

    with StubEndpoint(handler) as stub:
        client, body = post_once(spec_at(stub.url), monkeypatch)
    posts = [s for s in stub.seen if s.method == "POST"]
    assert body["choices"][0]["text"] == "ok" and len(posts) == 2
    assert posts[1].at - posts[0].at >= 2.0  # not the back-off's 0.5-1 s
    assert all(s.authorization == f"Bearer {KEY}" for s in stub.seen)
    assert client.provenance({})["endpoint"]["system_fingerprints"] == ["fp_1"]
    assert client.provenance({})["endpoint"]["reported_model_id"] == "model-x"


def test_a_retry_after_beyond_the_cap_fails_at_once(monkeypatch):
    async def handler(request, seen):
        if request.path == "/v1/models":
            return web.json_response(MODELS)
        return web.json_response({"error": "daily quota"}, status=429, headers={"Retry-After": "86400"})

    with StubEndpoint(handler) as stub, pytest.raises(ServiceUnavailable, match="retry after 86400 s"):
        post_once(spec_at(stub.url), monkeypatch)
    assert len([s for s in stub.seen if s.method == "POST"]) == 1


def test_403_fails_at_once_naming_the_variable_and_never_the_key(monkeypatch):
    # Some APIs echo part of the key in their refusal: the message must not carry it.
    async def handler(request, seen):
        if request.path == "/v1/models":
            return web.json_response(MODELS)
        return web.json_response({"error": f"key {KEY} may not use model-x"}, status=403)

    with StubEndpoint(handler) as stub, pytest.raises(RequestRejected) as refused:
        post_once(spec_at(stub.url), monkeypatch, max_in_flight=1)
    assert refused.value.status == 403
    assert KEY_VARIABLE in str(refused.value) and KEY not in str(refused.value)
    assert len([s for s in stub.seen if s.method == "POST"]) == 1


def test_other_refusals_show_the_answer_with_the_key_blanked(monkeypatch):
    async def handler(request, seen):
        if request.path == "/v1/models":
            return web.json_response(MODELS)
        return web.json_response({"error": f"bad request from {KEY}"}, status=400)

    with (
        StubEndpoint(handler) as stub,
        pytest.raises(RequestRejected, match=r"HTTP 400.*\[API key\]") as refused,
    ):
        post_once(spec_at(stub.url), monkeypatch)
    assert KEY not in str(refused.value)


def test_5xx_is_retried_then_succeeds(monkeypatch):
    async def handler(request, seen):
        if request.path == "/v1/models":
            return web.json_response(MODELS)
        posts = [s for s in seen if s.method == "POST"]
        return web.json_response(COMPLETION) if len(posts) > 2 else web.Response(status=503)

    with StubEndpoint(handler) as stub:
        _, body = post_once(spec_at(stub.url), monkeypatch)
    assert body["choices"][0]["text"] == "ok" and len([s for s in stub.seen if s.method == "POST"]) == 3


def detect(stub: StubEndpoint, monkeypatch, chat: bool = False):
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    client = EndpointClient(spec_at(stub.url), max_in_flight=1)
    client.wait()
    return asyncio.run(
        client.run(lambda c: detect_logprob_support(c, "model-x", Scoring(mode="auto", chat=chat)))
    )


def top_logprobs_answer(k: int) -> dict:
    top = {"A": math.log(0.5), " B": math.log(0.2), **{f"t{i}": math.log(0.01) for i in range(k - 2)}}
    return {"choices": [{"text": "A", "logprobs": {"top_logprobs": [top]}}]}


def test_an_api_without_tokenize_or_token_ids_gets_top_k_at_the_largest_k_it_accepts(monkeypatch):
    # A hosted completions API: no /tokenize, at most 5 log-probabilities.
    async def handler(request, seen):
        if request.path == "/v1/models":
            return web.json_response(MODELS)
        if request.path != "/v1/completions":
            return web.json_response({"error": "not found"}, status=404)
        k = (await request.json())["logprobs"]
        if k > 5:
            return web.json_response({"error": "logprobs must be at most 5"}, status=400)
        return web.json_response(top_logprobs_answer(k))

    with StubEndpoint(handler) as stub:
        support = detect(stub, monkeypatch)
    assert (support.method, support.top_logprobs) == ("top-k", 5)


def test_an_endpoint_without_log_probabilities_is_refused(monkeypatch):
    async def handler(request, seen):
        if request.path == "/v1/models":
            return web.json_response(MODELS)
        if request.path == "/tokenize":
            return web.Response(status=404)
        return web.json_response({"choices": [{"message": {"content": "A"}, "logprobs": None}]})

    with (
        StubEndpoint(handler) as stub,
        pytest.raises(NoLogprobs, match="gives no log-probabilities on /v1/chat"),
    ):
        detect(stub, monkeypatch, chat=True)


# --- The workflow (no server: every run here stops before a request) ---------------------


def endpoint_study(workdir: Path, config: dict, **changes) -> Path:
    return write_config(workdir / "study.yaml", with_endpoint(config, **changes))


def test_an_endpoint_model_has_no_server_job_and_its_shards_hold_their_share(study):
    workdir, config = study
    configfile = endpoint_study(workdir, config)
    served = list(config["models"])
    result = run_snakemake(workdir, "--dry-run", configfile=configfile, env={KEY_VARIABLE: KEY})
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    shards = sum(len(issue["topics"]) for issue in config["issues"].values()) * len(config["prompt_types"])
    assert counts["serve_model"] == len(served)
    assert counts["generate"] == len(served) * shards and counts["generate_endpoint"] == shards
    assert counts["opinion_shard_endpoint"] == counts["opinion_shard"] // len(served)
    blocks = result.stdout.split("\n\n")
    endpoint_jobs = [block for block in blocks if "rule generate_endpoint:" in block]
    assert endpoint_jobs and all("endpoint_hosted=2" in block for block in endpoint_jobs)
    assert KEY not in result.stdout + result.stderr


def test_a_run_without_the_key_variable_does_not_plan(study):
    workdir, config = study
    configfile = endpoint_study(workdir, config)
    result = run_snakemake(workdir, "--dry-run", configfile=configfile)
    assert result.returncode != 0
    assert f"the environment variable {KEY_VARIABLE} is not set" in result.stdout + result.stderr


def test_only_models_runs_a_subset_without_editing_the_config(study):
    workdir, config = study
    configfile = endpoint_study(workdir, config)
    result = run_snakemake(
        workdir,
        "--dry-run",
        "--config",
        "only_models=[hosted]",
        configfile=configfile,
        env={KEY_VARIABLE: KEY},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout)
    assert "serve_model" not in counts and "generate" not in counts and counts["generate_endpoint"] > 0
    # The endpoint is down, say: the rest run without its key.
    served = ",".join(name for name in config["models"])
    result = run_snakemake(workdir, "--dry-run", "--config", f"only_models=[{served}]", configfile=configfile)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "generate_endpoint" not in job_counts(result.stdout)


def test_a_run_over_its_request_budget_does_not_start(study):
    workdir, config = study
    n_per_shard = config["generation"]["n_per_shard"]
    configfile = endpoint_study(workdir, config, request_budget=n_per_shard * 2)
    target = "results/generated/hosted/covid-19/mask-mandates/{}.parquet"
    targets = [target.format(prompt_type) for prompt_type in ("default", "liberal", "conservative")]
    result = run_snakemake(workdir, "--", *targets, configfile=configfile, env={KEY_VARIABLE: KEY})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (
        f"would send {3 * n_per_shard} requests" in output
        and f"request_budget of {2 * n_per_shard}" in output
    )
    assert "not starting" in output and "Finished jobid" not in output
    assert not (workdir / "results").exists() and not (workdir / "logs").exists()


def test_the_plan_shows_requests_per_endpoint_as_the_run_counts_them(study):
    from affalign.config.endpoints import format_endpoint_plan, plan_endpoints
    from affalign.opinions import read_questions

    workdir, config = study
    config = with_endpoint(config, request_budget=400)
    shards = sum(len(issue["topics"]) for issue in config["issues"].values()) * len(config["prompt_types"])
    opinions = config["opinions"]
    contexts = sum(1 if method == "default" else len(opinions["groups"]) for method in opinions["contexts"])
    questions = sum(len(read_questions(survey["questions"])) for survey in opinions["surveys"].values())
    expected = shards * config["generation"]["n_per_shard"] + contexts * questions
    (plan,) = plan_endpoints(config, workdir)
    assert (plan.model, plan.shards_to_run, plan.requests, plan.budget) == ("hosted", shards, expected, 400)
    assert plan.over_budget and "OVER BUDGET" in format_endpoint_plan([plan])
    done = workdir / "results" / "generated" / "hosted" / "covid-19" / "mask-mandates" / "default.parquet"
    done.parent.mkdir(parents=True)
    done.write_bytes(b"")
    (plan,) = plan_endpoints(config, workdir)
    assert plan.requests == expected - config["generation"]["n_per_shard"]
