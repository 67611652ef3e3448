"""The endpoints' pre-flight, run by the workflow's onstart over the jobs about to run
(affalign.config.endpoints.preflight_endpoints): requests counted against each budget, the
log-probability method detected once for the endpoints whose opinion shards run. The
workflow's own refusal over a budget is in test_endpoint.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import demo_config, validated_config

from affalign.config import EndpointRunRefused, detection_file, preflight_endpoints
from affalign.config import endpoints as preflight
from affalign.opinions import read_questions
from affalign.opinions.client import LogprobSupport
from affalign.service import EndpointSpec


def study(**endpoint) -> tuple[dict, dict[str, EndpointSpec]]:
    config = demo_config()
    fields = {"base_url": "http://127.0.0.1:9/v1", "model": "provider/model-x", "request_budget": 10_000}
    config["models"]["hosted"] = {"kind": "instruct", "endpoint": {**fields, **endpoint}}
    config = validated_config(config)
    return config, {"hosted": EndpointSpec.from_config("hosted", config["models"]["hosted"])}


def jobs(surveys=("economy",)) -> list[tuple[str, dict]]:
    generation = [("generate_endpoint", {"model": "hosted", "issue": "covid-19"})] * 3
    opinions = [
        ("opinion_shard_endpoint", {"model": "hosted", "survey": s, "context": "default"}) for s in surveys
    ]
    served = [("generate", {"model": "smollm2-135m-completion"})]
    return generation + opinions + served


@pytest.fixture()
def probe(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    probed = []

    def detect(spec, scoring):
        probed.append((spec.model, scoring))
        return LogprobSupport("top-k", scoring.top_logprobs, "stub: no token ids")

    monkeypatch.setattr(preflight, "detect_endpoint_logprobs", detect)
    return probed


def test_requests_are_counted_per_endpoint_and_the_method_detected_once(probe):
    config, endpoints = study()
    logged = []
    preflight_endpoints(config, endpoints, jobs(), log=logged.append)
    questions = len(read_questions(Path(config["opinions"]["surveys"]["economy"]["questions"])))
    requests = 3 * config["generation"]["n_per_shard"] + questions
    assert logged[0] == (
        f"affalign: endpoint model hosted: {requests} requests planned (request budget 10000) "
        "to provider/model-x at http://127.0.0.1:9/v1"
    )
    ((model, scoring),) = probe
    assert (
        model == "hosted"
        and scoring.mode == "auto"
        and scoring.top_logprobs == config["opinions"]["top_logprobs"]
    )
    record = json.loads(Path(detection_file("hosted")).read_text())
    assert record["method"] == "top-k" and record["served_model"] == "provider/model-x"
    assert (
        logged[1]
        == "affalign: endpoint model hosted: opinion shards use top-k log-probabilities (stub: no token ids)"
    )


def test_a_run_over_a_budget_is_refused_before_any_probe(probe):
    config, endpoints = study(request_budget=10)
    with pytest.raises(
        EndpointRunRefused, match=r"^affalign: not starting: models.hosted.endpoint: this run"
    ):
        preflight_endpoints(config, endpoints, jobs(), log=lambda line: None)
    assert probe == []


def test_only_auto_endpoints_whose_opinion_shards_run_are_probed(probe):
    config, endpoints = study(logprobs="exact")
    preflight_endpoints(config, endpoints, jobs(), log=lambda line: None)
    config, endpoints = study()
    preflight_endpoints(config, endpoints, jobs(surveys=()), log=lambda line: None)
    assert probe == [] and not Path(detection_file("hosted")).exists()


def test_a_run_without_endpoints_looks_at_no_job():
    def no_jobs():
        raise AssertionError("the jobs were listed")
        yield

    preflight_endpoints(demo_config(), {}, no_jobs())
