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


def test_compare_groups_default_to_none_and_exclude_overall():
    config = demo_config()
    validate(config, SCHEMA, set_default=True)
    assert config["opinions"]["compare_groups"] == []
    assert config["opinions"]["bootstrap_replicates"] == 1000 and config["opinions"]["permutations"] == 10000
    config["opinions"]["compare_groups"] = ["overall"]
    with pytest.raises(Exception, match="overall"):
        validate(config, SCHEMA, set_default=True)


def test_a_group_is_either_steered_or_compared_only(study):
    config = study[1]
    config["opinions"]["compare_groups"] = ["moderate", "liberal"]
    with pytest.raises(ConfigError, match=r"opinions.compare_groups lists 'liberal', which opinions.groups"):
        check_config(config, "study.yaml")


def test_compared_groups_must_be_answered_by_every_survey(study):
    config = study[1]
    # The economy responses have moderates, the science distributions do not.
    config["opinions"]["compare_groups"] = ["moderate"]
    with pytest.raises(ConfigError, match=r"opinions.surveys.science: .*group 'moderate' has no answers"):
        check_config(config, "study.yaml")
    config["opinions"]["surveys"].pop("science")
    check_config(config, "study.yaml")


def test_survey_warnings_are_shown_when_the_config_is_checked(study, tmp_path, capsys):
    config = study[1]
    answers = tmp_path / "science-answers.csv"
    original = (REPO / "resources/demo/survey/science-answers.csv").read_text()
    answers.write_text(
        original.replace(
            "climate-priority,liberal,A top priority,0.58", "climate-priority,liberal,A top priority,5.8"
        )
    )
    questions = tmp_path / "science-questions.csv"
    questions.write_text(
        (REPO / "resources/demo/survey/science-questions.csv")
        .read_text()
        .replace(",Refused,,true", ",Refused,99,false", 1)
    )
    config["opinions"]["surveys"]["science"] |= {"answers": str(answers), "questions": str(questions)}
    check_config(config, "study.yaml")
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("affalign: WARNING: study.yaml: opinions.surveys.science: ")
    assert "question 'climate-priority' option 'Refused' looks like a refusal" in warnings[0]
    assert "question 'climate-priority', group 'liberal': the weights sum to 6.22, not 1" in warnings[1]


def test_the_survey_job_writes_warnings_to_its_log_and_the_console(tmp_path, capfd):
    from affalign.opinions.tables import write_survey_table

    root = REPO / "resources/demo/survey"
    answers = tmp_path / "answers.csv"
    answers.write_text(
        (root / "science-answers.csv")
        .read_text()
        .replace("trust-scientists,overall,A great deal,0.29", "trust-scientists,overall,A great deal,2.9")
    )
    settings = {"form": "distribution", "groups": ["liberal", "conservative"], "compare_groups": [],
                "group_column": "group", "weight_column": "weight"}  # fmt: skip
    write_survey_table(
        questions=root / "science-questions.csv",
        answers=answers,
        settings=settings,
        survey="science",
        output=tmp_path / "science.parquet",
    )
    out, err = capfd.readouterr()
    expected = "question 'trust-scientists', group 'overall': the weights sum to 3.61, not 1"
    assert f"WARNING: {answers}: {expected}" in out  # the job's log
    assert f"affalign: WARNING: {answers}: {expected}" in err  # the console


def test_compared_only_groups_add_no_shards(study):
    workdir, config = study
    config["opinions"]["compare_groups"] = ["moderate"]
    config["opinions"]["surveys"].pop("science")
    dry = run_snakemake(workdir, "--dry-run", configfile=write_config(workdir / "study.yaml", config))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in dry.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert counts["opinion_shard"] == 2 * 1 * 7  # steering towards liberal and conservative only


def test_steering_figure_draws_both_panels_and_tolerates_empty_tables(tmp_path):
    import numpy as np

    from affalign.opinions.comparisons import DIFFERENTIAL_SCHEMA, STEERABILITY_SCHEMA

    steer = pl.DataFrame(
        [("m", "lib", 0.7, "qa-lib", 0.8, 0.1, 6, 0.05, 0.15)], schema=STEERABILITY_SCHEMA, orient="row"
    )
    differential = pl.DataFrame(
        [
            ("m", "qa", "lib", 0.7, 0.8, 0.79, 0.01, -0.02, 0.04, 0.5, 0.5, 0.5, 6, 1),
            ("m", "qa", "con", 0.7, 0.8, 0.7, 0.1, 0.05, np.nan, 0.03, 0.06, 0.06, 6, 1),
        ],
        schema=DIFFERENTIAL_SCHEMA,
        orient="row",
    )
    drawn = []
    for name in ("a.png", "b.png"):
        figures.plot_opinion_steering(steer, differential, "t", tmp_path / name)
        drawn.append((tmp_path / name).read_bytes())
    assert drawn[0] == drawn[1] and drawn[0][:4] == b"\x89PNG"
    figures.plot_opinion_steering(steer.clear(), differential.clear(), "t", tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:4] == b"\x89PNG"
