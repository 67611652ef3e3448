"""`affalign plan`: shards, requests, token bound and GPU-hours per model, and what a
rerun would do (shards already written count as done)."""

from __future__ import annotations

import pytest
from conftest import REPO, demo_config, run_affalign, validated_config, write_config

from affalign.config.plan import (
    allocation_flag,
    format_plan,
    model_size_b,
    plan_classification,
    plan_study,
    profile_minutes,
    throughput_for,
)


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [
        ("llama", {"hub_id": "meta-llama/Llama-3.1-8B-Instruct"}, 8.0),
        ("qwen", {"hub_id": "Qwen/Qwen2.5-0.5B"}, 0.5),
        ("olmo", {"hub_id": "allenai/OLMo-2-1124-7B"}, 7.0),
        ("smol", {"path": "resources/models/SmolLM2-135M-Instruct"}, 0.135),
        ("no-size", {"path": "resources/models/my-model"}, None),
        ("mistral-7b-v0.3", {"hub_id": "org/unnamed"}, 7.0),
    ],
)
def test_model_size_is_read_from_the_name(name, spec, expected):
    assert model_size_b(name, spec, {}) == expected
    assert model_size_b(name, spec, {name: 1.5}) == 1.5


def test_throughput_takes_the_next_larger_size_and_scales_beyond_the_table():
    table = {"1": 20000, "8": 6000, "72": 900}
    assert throughput_for(0.5, table) == 20000
    assert throughput_for(7, table) == 6000
    assert throughput_for(8, table) == 6000
    assert throughput_for(144, table) == pytest.approx(450)


def test_plan_counts_shards_tokens_and_gpu_hours_and_what_is_done(tmp_path):
    config = demo_config()
    config["models"] = {
        "big": {"hub_id": "org/model-8B", "kind": "base", "engine": {"tensor_parallel_size": 2}},
        "unknown": {"path": "x", "kind": "instruct"},
    }
    config["generation"] = {"n_per_shard": 100, "max_tokens": 50}
    config["plan"] = {"throughput_tokens_per_s": {"8": 1000}, "load_minutes": 6}
    config = validated_config(config)
    shards = sum(len(issue["topics"]) for issue in config["issues"].values()) * 3
    done = tmp_path / "results" / "generated" / "big" / "covid-19" / "mask-mandates" / "default.parquet"
    done.parent.mkdir(parents=True)
    done.write_bytes(b"")
    big, unknown = plan_study(config, tmp_path)
    assert (big.shards, big.shards_done, big.requests) == (shards, 1, shards * 100)
    assert big.max_output_tokens == shards * 100 * 50
    # (shards still to run x 5,000 tokens / 1,000 tokens/s + 6 min load) x 2 GPUs
    assert big.gpu_hours == pytest.approx(2 * ((shards - 1) * 5 + 360) / 3600)
    assert unknown.size_b is None and unknown.gpu_hours is None
    table = format_plan([big, unknown])
    (total,) = [line for line in table.splitlines() if line.startswith("total")]
    assert "(+1 unknown)" in total
    assert "plan.model_sizes_b" in table


def test_a_model_with_every_shard_done_costs_nothing(tmp_path):
    config = demo_config()
    config["models"] = {"m": {"hub_id": "org/m-1B", "kind": "base"}}
    config = validated_config(config)
    for issue, spec in config["issues"].items():
        for topic in spec["topics"]:
            for prompt_type in config["prompt_types"]:
                path = tmp_path / "results" / "generated" / "m" / issue / topic / f"{prompt_type}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
    (plan,) = plan_study(config, tmp_path)
    assert plan.shards_to_run == 0 and plan.gpu_hours == 0


def test_the_plan_command_prints_the_cluster_study():
    result = run_affalign("plan", "--configfile", "config/config.yaml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["model", "size_b", "gpus", "shards"]
    assert any(line.startswith("llama-3.1-8b ") for line in lines)
    assert any(line.startswith("total") for line in lines)


def test_plan_reads_the_configfile_it_is_given(study):
    tmp_path, config = study  # the demo, its model folders stand-ins (plan checks they exist)
    configfile = write_config(tmp_path / "c.yaml", config)
    result = run_affalign("plan", "--configfile", str(configfile), "--directory", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for model in config["models"]:
        assert any(line.startswith(model + " ") for line in result.stdout.splitlines()), result.stdout


def test_the_bill_counts_gpu_classifiers_and_the_allocation_the_jobs_request():
    result = run_affalign("plan", "--configfile", "config/config.yaml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "asked_gpu_h" in lines[0].split()
    # Eight 7-8B models, 48 shards of 2,000 x 64 tokens at 6,000 tok/s + 5 min load each
    # (0.37 GPU-h) against resources.runtime 240 min x 1 GPU (4 GPU-h): over-asked.
    (llama,) = [line.split() for line in lines if line.startswith("llama-3.1-8b ")]
    assert llama[-4:] == ["0.37", "4.00", "over", "3x"]
    # Both transformer classifiers are billed (one job per model and per issue, 1 GPU,
    # 60 min each from profiles/slurm); the lexicons are not.
    billed = {line.split()[1]: line.split() for line in lines if line.startswith("classify: ")}
    assert set(billed) == {"twitter-roberta-emotion", "mformer"}
    assert billed["mformer"][3:5] == ["10", "jobs"] and billed["mformer"][-3] == "10.00"
    (total,) = [line.split() for line in lines if line.startswith("total")]
    assert total[-1] == f"{8 * 4 + 2 * 10:.2f}"


def test_classification_estimate_follows_posts_and_models_of_a_binary_set(study):
    workdir, config = study
    config = validated_config({**config, "classifiers": {
        "roberta": {"type": "hf", "model": "org/roberta", "labels": ["a", "b"]},
        "set": {"type": "hf-binary-set", "models": {"a": "org/a", "b": "org/b", "c": "org/c"}},
        "nrc": {"type": "lexicon", "lexicon": "nrc-emotion"},
    }, "plan": {"classifier_posts_per_s": 10, "classifier_load_minutes": 1}})  # fmt: skip
    roberta, binary_set = plan_classification(config, workdir)
    posts = sum(len(spec["topics"]) for spec in config["issues"].values()) * 3 * 24 * len(config["models"])
    jobs = len(config["models"]) + len(config["issues"])
    assert (roberta.classifier, roberta.posts, roberta.jobs) == ("roberta", posts, jobs)
    assert roberta.gpu_hours == pytest.approx((posts / 10 + jobs * 60) / 3600)
    assert binary_set.gpu_hours == pytest.approx((3 * posts / 10 + jobs * 60) / 3600)


@pytest.mark.parametrize(
    ("value", "attempt", "minutes"),
    [(240, 1, 240), ("60 * attempt", 1, 60), ("60 * attempt", 2, 120), ("30+15", 1, 45)],
)
def test_profile_runtimes_are_read_as_snakemake_reads_them(value, attempt, minutes):
    assert profile_minutes(value, attempt) == minutes


def test_a_profile_value_beyond_arithmetic_is_refused():
    with pytest.raises(ValueError, match="only numbers, attempt"):
        profile_minutes("__import__('os')")


@pytest.mark.parametrize(
    ("estimate", "requested", "flag"),
    [(1.0, 0.5, "short"), (1.0, 3.5, "over 3x"), (1.0, 2.9, ""), (None, 4, "")],
)
def test_requests_below_or_far_above_the_estimate_are_flagged(estimate, requested, flag):
    assert allocation_flag(estimate, requested) == flag


def test_an_llm_judge_is_billed_as_its_own_server_job():
    from conftest import scenario_config

    config = validated_config(scenario_config("llm-classifier"))
    config["plan"] = {**config["plan"], "model_sizes_b": {"smollm2-135m-instruct": 1}, "load_minutes": 5}
    (judge,) = plan_classification(config, REPO / "no-such-workdir")
    spec = next(spec for spec in config["classifiers"].values() if spec["type"] == "llm")
    assert judge.jobs == 1
    # Every post one answer of at most max_tokens at the 1B throughput (20,000 tok/s), plus a load.
    assert judge.gpu_hours == pytest.approx((judge.posts * spec["max_tokens"] / 20000 + 300) / 3600)
    assert judge.requested_gpu_hours == config["models"][spec["model"]]["resources"]["runtime"] / 60
    # Its gold file's posts are labelled too (40 in the scenario's gold file).
    assert "gold" in spec
    classifiers = config["classifiers"]
    without_gold = {name: {k: v for k, v in c.items() if k != "gold"} for name, c in classifiers.items()}
    (ungolded,) = plan_classification({**config, "classifiers": without_gold}, REPO / "no-such-workdir")
    assert judge.posts - ungolded.posts == 40 and judge.requests - ungolded.requests == 40


def test_a_gold_file_adds_one_classification_job_and_its_posts(study, tmp_path):
    workdir, config = study
    gold = tmp_path / "gold.csv"
    gold.write_text("post_id,text,a,b\n" + "".join(f"g{i},post {i},1,0\n" for i in range(35)))
    roberta = {"type": "hf", "model": "org/roberta", "labels": ["a", "b"]}
    plans = {}
    for name, spec in {"plain": roberta, "golden": {**roberta, "gold": str(gold)}}.items():
        checked = validated_config({**config, "classifiers": {name: spec}})
        (plans[name],) = plan_classification(checked, workdir)
    assert plans["golden"].jobs == plans["plain"].jobs + 1
    assert plans["golden"].posts == plans["plain"].posts + 35
    assert plans["golden"].requested_gpu_hours > plans["plain"].requested_gpu_hours
