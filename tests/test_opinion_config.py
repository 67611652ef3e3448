"""The opinions section of the config: optional, checked before any job runs."""

from __future__ import annotations

import copy

import polars as pl
import pytest
from conftest import REPO, demo_config, run_snakemake, write_config
from snakemake.utils import validate

from affalign.config.checks import ConfigError, check_config
from affalign.figures import plots as figures

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def test_demo_opinions_pass_the_checks(study):
    config = study[1]
    validate(config, SCHEMA, set_default=True)
    check_config(config, "study.yaml")
    assert config["opinions"]["logprobs"] == "exact" and config["opinions"]["top_logprobs"] == 20


def test_qa_answer_must_be_one_of_its_options(study):
    config = study[1]
    config["opinions"]["groups"]["liberal"]["qa"]["answer"] = "Progressive"
    with pytest.raises(ConfigError, match=r"study.yaml: opinions.groups.liberal.qa.answer 'Progressive'"):
        check_config(config, "study.yaml")


def test_missing_survey_file_is_named(study):
    config = study[1]
    config["opinions"]["surveys"]["economy"]["answers"] = "/no/such/answers.csv"
    with pytest.raises(
        ConfigError, match=r"opinions.surveys.economy.answers '/no/such/answers.csv' does not"
    ):
        check_config(config, "study.yaml")


def test_survey_problems_surface_with_the_config_key(study, tmp_path):
    config = study[1]
    answers = tmp_path / "responses.csv"
    answers.write_text(
        (REPO / "resources/demo/survey/economy-responses.csv").read_text().replace(",Poor,", ",Awful,", 1)
    )
    config["opinions"]["surveys"]["economy"]["answers"] = str(answers)
    with pytest.raises(
        ConfigError, match=r"opinions.surveys.economy: .*responses.csv: column 'econ-conditions'"
    ):
        check_config(config, "study.yaml")


def test_overall_is_not_a_group_name():
    config = demo_config()
    config["opinions"]["groups"]["overall"] = copy.deepcopy(config["opinions"]["groups"]["liberal"])
    with pytest.raises(Exception, match="overall"):
        validate(config, SCHEMA, set_default=True)


def test_without_opinions_no_opinion_jobs_are_planned(study):
    workdir, config = study
    config.pop("opinions")
    dry = run_snakemake(workdir, "--dry-run", configfile=write_config(workdir / "study.yaml", config))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    for rule in ("opinion_shard", "survey_table", "opinion_tables", "plot_representativeness"):
        assert rule not in dry.stdout, dry.stdout
    assert "serve_model" in dry.stdout and "generate" in dry.stdout


def test_with_opinions_shards_join_the_model_servers(study):
    workdir, config = study
    dry = run_snakemake(workdir, "--dry-run", configfile=write_config(workdir / "study.yaml", config))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in dry.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    # Two models x two surveys x (default + three steering contexts x two groups).
    assert counts["opinion_shard"] == 2 * 2 * 7
    assert counts["serve_model"] == 2 and counts["survey_table"] == 2 and counts["opinion_tables"] == 1


def test_representativeness_heatmap_is_deterministic_and_tolerates_gaps(tmp_path):
    table = pl.DataFrame(
        {
            "model": ["m", "m", "m"],
            "context": ["default", "default", "qa-lib"],
            "group": ["lib", "overall", "lib"],
            "representativeness": [0.8, None, 0.9],
        },
        schema_overrides={"representativeness": pl.Float64},
    )
    baselines = pl.DataFrame(
        {
            "baseline": ["group vs overall", "human (avg)", "human (worst)"],
            "group": ["lib", None, "lib"],
            "representativeness": [0.85, 0.85, 0.85],
        }
    )
    rows, columns, matrix = figures.representativeness_matrix(table, baselines)
    assert rows == ["m · default", "m · qa-lib", figures.HUMAN_BASELINE_ROW] and columns == ["lib", "overall"]
    assert matrix[2, 0] == 0.85
    drawn = []
    for name in ("a.png", "b.png"):
        figures.plot_representativeness_heatmap(table, baselines, "t", tmp_path / name)
        drawn.append((tmp_path / name).read_bytes())
    assert drawn[0] == drawn[1] and drawn[0][:4] == b"\x89PNG"
