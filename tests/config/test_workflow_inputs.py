"""The config-side helpers the rule files call (affalign.config): a model server's
resources, endpoint limits and shares, what one issue's ingestion depends on, models as
jobs see them."""

from __future__ import annotations

from types import SimpleNamespace

from conftest import demo_config, validated_config

from affalign.config import (
    LLMClassifiers,
    ModelIdentity,
    endpoint_resources,
    endpoint_specs,
    human_inputs,
    human_source,
    ideology_settings,
    issue_keywords,
    model_source,
    names_pattern,
    register_endpoint_limits,
    self_classification_warnings,
    server_resources,
    topic_assignment,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def wildcards(**values) -> SimpleNamespace:
    return SimpleNamespace(**values)


def with_endpoint(config: dict) -> dict:
    config = dict(config)
    endpoint = {
        "base_url": "http://h/v1",
        "model": "x",
        "request_budget": 100,
        "max_concurrency": 6,
        "shard_jobs": 3,
    }
    config["models"] = {**config["models"], "hosted": {"kind": "instruct", "endpoint": endpoint}}
    return validated_config(config)


def test_a_model_server_asks_for_its_gpus_memory_runtime_and_slurm_flags(monkeypatch):
    monkeypatch.setenv("AFFALIGN_SLURM_PARTITION", "gpu")
    config = demo_config()
    model = next(iter(config["models"]))
    entry = config["models"][model]
    entry["resources"].update(partition="big", qos="long", mem_mb=1000, runtime=60)
    entry["resources"].pop("gpu_model", None)
    resources = server_resources(config)
    w = wildcards(model=model)
    assert resources["gpu"](w) == entry["engine"]["tensor_parallel_size"]
    assert resources["cpus_per_task"](w) == entry["resources"]["cpus"]
    assert (resources["mem_mb"](w, 2), resources["runtime"](w, 3)) == (2000, 180)
    assert resources["nodes"] == 1 and resources["slurm_partition"](w) == "big"
    assert resources["qos"](w) == "long" and resources["gpu_model"](w) is None  # None: no flag


def test_endpoint_jobs_hold_a_share_of_their_own_endpoint_only():
    config = with_endpoint(demo_config())
    endpoints = endpoint_specs(config, config["models"])
    assert list(endpoints) == ["hosted"]
    shares = endpoint_resources(endpoints)
    (resource,) = shares
    assert shares[resource](wildcards(model="hosted")) == 2  # 6 in flight over 3 jobs
    assert shares[resource](wildcards(model="smollm2-135m-completion")) == 0
    workflow = SimpleNamespace(global_resources={}, registered={})
    workflow.register_resource = lambda name, total: workflow.registered.update({name: total})
    register_endpoint_limits(workflow, endpoints)
    assert workflow.registered == {resource: 6}
    # A total given on the command line (--resources) wins.
    workflow = SimpleNamespace(global_resources={resource: 1}, register_resource=None)
    register_endpoint_limits(workflow, endpoints)


def test_ingestion_depends_on_keywords_and_ideology_only_where_they_are_used():
    config = demo_config()
    issue = next(iter(config["human"]))
    source = config["human"][issue]
    assert human_source(config, issue)["columns"] == source["columns"]
    assert human_inputs(config, issue)["table"] == source["path"]
    keywords, domains = source["topic_from"] == "keywords", source["group_from"] == "domains"
    assert bool(issue_keywords(config, issue)) == keywords
    assert ("domains" in human_inputs(config, issue)) == domains == bool(ideology_settings(config, issue))
    assert ("multiple_topics" in topic_assignment(config, issue)) == keywords
    config["human"][issue].update(topic_from="keywords", group_from="domains")
    assert set(issue_keywords(config, issue)) == set(config["issues"][issue]["topics"])
    assert ideology_settings(config, issue) == dict(config["ideology"])
    assert "multiple_topics" in topic_assignment(config, issue)


def test_a_model_is_its_folder_locked_hub_commit_or_endpoint():
    config = with_endpoint(demo_config())
    config["models"]["hub"] = {"hub_id": "org/m", "revision": "main", "kind": "base"}
    hub = ModelIdentity.from_config(config, "hub", {("org/m", "main"): COMMIT})
    assert (hub.source, hub.revision, hub.chat_template) == ("org/m", COMMIT, False)
    hosted = ModelIdentity.from_config(config, "hosted", {})
    assert (hosted.revision, hosted.chat_template) == (None, True)
    assert model_source(config["models"]["hosted"]) == "endpoint x at http://h/v1"


def test_a_judge_classifying_its_own_generations_is_named():
    config = {"classifiers": {"j": {"type": "llm", "model": "m"}, "lex": {"type": "lexicon"}}}
    assert self_classification_warnings(config, ["m"]) == [
        "affalign: classifier j: m classifies its own generations (allowed; recorded as judge_is_generator "
        "in its affect files)"
    ]
    assert self_classification_warnings(config, ["other"]) == []


def test_llm_classifiers_are_told_apart_by_where_their_judge_runs():
    config = with_endpoint(demo_config())
    llm = {"type": "llm", "labels": {"joy": "the writer is happy"}}
    served = next(iter(config["models"]))
    config["classifiers"] = {
        "lex": config["classifiers"][next(iter(config["classifiers"]))],
        "b-judge": {**llm, "model": served},
        "a-hosted": {**llm, "model": "hosted"},
        "c-judge": {**llm, "model": served},
    }
    roles = LLMClassifiers.from_config(config)
    assert roles.served == ["b-judge", "c-judge"] and roles.endpoint == ["a-hosted"]
    assert roles.judges == [served]  # one server for both classifiers of one judge


def test_a_wildcard_pattern_matches_only_its_names_and_nothing_when_there_are_none():
    import re

    pattern = names_pattern(["gpt-4.1", "llama"])
    assert re.fullmatch(pattern, "gpt-4.1") and re.fullmatch(pattern, "llama")
    assert not re.fullmatch(pattern, "gpt-441") and not re.fullmatch(pattern, "gpt-4.1/x")
    assert not re.fullmatch(names_pattern([]), "") and not re.fullmatch(names_pattern([]), "any")
