"""Bad input stops the run before any job, names the file and key, and overwrites nothing."""

import subprocess
import sys
from pathlib import Path

import polars as pl
from conftest import REPO, run_snakemake, stand_in_model, write_config

# The most a config error may print: one message, not the schema.
MAX_ERROR_LINES = 12


def assert_rejected(
    workdir: Path, config: dict | str | None, *fragments: str, configfile: Path | None = None
) -> str:
    """Run the workflow on ``config`` (a dict, YAML text written as is, or None: ``configfile``
    as it is) and check that it stops before any job: non-zero exit, every fragment in its
    output, nothing under results/ but an earlier result, which is untouched."""
    if isinstance(config, dict):
        configfile = write_config(workdir / "study.yaml", config)
    elif isinstance(config, str):
        configfile = workdir / "study.yaml"
        configfile.write_text(config)
    sentinel = workdir / "results" / "align" / "nrc-emotion" / "alignment.csv"
    sentinel.parent.mkdir(parents=True, exist_ok=True)
    sentinel.write_text("earlier results\n")
    result = run_snakemake(workdir, configfile=configfile)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in fragments:
        assert fragment in output, output
    assert sentinel.read_text() == "earlier results\n"
    made = [path for path in (workdir / "results").rglob("*") if path.is_file()]
    assert made == [sentinel], made
    return output


def test_valid_config_plans(study):
    workdir, config = study
    configfile = write_config(workdir / "study.yaml", config)
    result = run_snakemake(workdir, "--dry-run", configfile=configfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_classifier_type(study):
    workdir, config = study
    config["classifiers"]["emotions-bert"] = {"type": "spanemo", "model": "x"}
    expected = "'spanemo' is not one of ['lexicon', 'hf', 'hf-binary-set', 'llm']"
    assert_rejected(workdir, config, "study.yaml", expected, "classifiers")


def test_classifier_model_path_that_does_not_exist(study):
    workdir, config = study
    config["classifiers"]["emotions"] = {"type": "hf", "model": str(workdir / "no-model"), "labels": ["joy"]}
    assert_rejected(workdir, config, "study.yaml", "classifiers.emotions.model", "does not exist")


def test_unknown_lexicon(study):
    workdir, config = study
    config["classifiers"]["nrc-emotion"]["lexicon"] = "liwc"
    assert_rejected(workdir, config, "study.yaml", "'liwc' is not one of")


def test_model_path_that_does_not_exist(study):
    workdir, config = study
    config["models"]["smollm2-135m-instruct"]["path"] = str(workdir / "no-such-model")
    assert_rejected(workdir, config, "study.yaml", "models.smollm2-135m-instruct.path", "does not exist")


def test_topic_without_keywords(study):
    workdir, config = study
    config["issues"]["covid-19"]["topics"]["vaccines"]["keywords"] = []
    assert_rejected(workdir, config, "study.yaml", "keywords", "[] should be non-empty")


def test_human_table_without_text_column(study):
    workdir, config = study
    table = workdir / "posts.csv"
    table.write_text("post_id,body,group,topic\n1,hello,liberal,mask-mandates\n")
    config["human"]["covid-19"]["path"] = str(table)
    assert_rejected(workdir, config, "study.yaml", "human.covid-19", str(table), "column 'text'")


def test_slug_with_a_slash(study):
    workdir, config = study
    config["models"]["bad/name"] = config["models"].pop("smollm2-135m-completion")
    assert_rejected(workdir, config, "study.yaml", "bad/name")


# --- tables without posts (finding 5 of issue 16) ---


def test_human_csv_with_only_a_header(study):
    workdir, config = study
    table = workdir / "posts.csv"
    table.write_text("post_id,text,group,topic\n")
    config["human"]["covid-19"]["path"] = str(table)
    assert_rejected(
        workdir,
        config,
        f"study.yaml: human.covid-19: {table}: the table has no posts (0 rows); config key "
        "human.covid-19.path must name a table with at least one post",
    )


def test_human_parquet_without_rows(study):
    workdir, config = study
    table = workdir / "posts.parquet"
    pl.DataFrame(schema={c: pl.String for c in ("post_id", "text", "group", "topic")}).write_parquet(table)
    config["human"]["roe-v-wade"]["path"] = str(table)
    assert_rejected(workdir, config, f"human.roe-v-wade: {table}: the table has no posts (0 rows)")


# --- group values that are not groups of the study (finding 6 of issue 16) ---


def test_unknown_group_values_stop_the_ingest_job_with_their_counts(study):
    workdir, config = study
    source = pl.read_csv(config["human"]["covid-19"]["path"])
    table = workdir / "posts.csv"
    source.with_columns(
        pl.when(pl.int_range(pl.len()) < 3)
        .then(pl.lit("moderate"))
        .when(pl.int_range(pl.len()) < 5)
        .then(pl.lit("Liberal"))
        .otherwise(pl.col("group"))
        .alias("group")
    ).write_csv(table)
    config["human"]["covid-19"]["path"] = str(table)
    configfile = write_config(workdir / "study.yaml", config)
    target = "results/human/covid-19/posts.parquet"
    result = run_snakemake(workdir, "--", target, configfile=configfile, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "'moderate' (3 rows); fix them in the table" in output, output
    assert "human.covid-19.drop_unknown_groups: true to leave those rows out" in output
    assert not (workdir / target).exists()

    config["human"]["covid-19"]["drop_unknown_groups"] = True
    write_config(configfile, config)
    result = run_snakemake(workdir, "--", target, configfile=configfile, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "affalign: WARNING: issue 'covid-19': 2 rows of column 'group' (group) were matched" in output
    assert "affalign: WARNING: issue 'covid-19': 3 rows left out because column 'group'" in output
    posts = pl.read_parquet(workdir / target)
    assert posts.height == source.height - 3 and set(posts["group"]) == {"liberal", "conservative"}


# --- config files and schema errors (finding 8 of issue 16) ---


def test_a_key_given_twice_is_named_with_both_lines(study):
    workdir, config = study
    text = write_config(workdir / "base.yaml", config).read_text()
    assert text.startswith("seed: ")
    duplicated = text + "seed: 5\n"
    line = len(text.splitlines()) + 1
    assert_rejected(
        workdir,
        duplicated,
        f"study.yaml: key 'seed' is given twice, on line 1 and line {line}; YAML would keep only the last",
    )


def test_a_nested_key_given_twice_is_named_with_its_path(study):
    workdir, config = study
    text = write_config(workdir / "base.yaml", config).read_text()
    lines = text.splitlines()
    at = lines.index("  smollm2-135m-instruct:")
    path_line = next(i for i in range(at, len(lines)) if lines[i].startswith("    path: "))
    lines.insert(path_line + 1, "    path: /somewhere/else")
    assert_rejected(
        workdir,
        "\n".join(lines) + "\n",
        f"key 'models.smollm2-135m-instruct.path' is given twice, on line {path_line + 1} and line "
        f"{path_line + 2}",
    )


def test_a_yaml_syntax_error_in_the_default_config_names_file_and_line(study):
    workdir, config = study
    default = workdir / "config" / "config.yaml"
    default.parent.mkdir()
    text = write_config(default, config).read_text().replace("seed: ", "seed: [", 1)
    default.write_text(text)
    output = assert_rejected(workdir, None, "config/config.yaml: not valid YAML: line 2, column ")
    assert len(output.strip().splitlines()) <= MAX_ERROR_LINES, output


def test_a_yaml_syntax_error_in_a_configfile_is_named_by_the_module(study):
    """Snakemake reads --configfile before the workflow starts and names neither file nor
    line; python -m affalign.config (which its README points to) does."""
    workdir, config = study
    text = write_config(workdir / "base.yaml", config).read_text().replace("seed: ", "seed: [", 1)
    assert_rejected(workdir, text, "not valid JSON or YAML")
    checked = subprocess.run(
        [sys.executable, "-m", "affalign.config", str(workdir / "study.yaml")],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    assert checked.returncode == 1
    assert checked.stderr.startswith(f"{workdir / 'study.yaml'}: not valid YAML: line 2, column "), (
        checked.stderr
    )


def test_a_missing_top_level_key_is_named_in_one_line(study):
    workdir, config = study
    config.pop("seed")
    output = assert_rejected(
        workdir, config, "study.yaml: not a valid affalign config: top level: 'seed' is a required property"
    )
    assert "$defs" not in output and "additionalProperties" not in output
    assert len(output.strip().splitlines()) <= MAX_ERROR_LINES, output


def test_a_model_folder_without_config_json(study):
    workdir, config = study
    folder = workdir / "empty-model"
    folder.mkdir()
    config["models"]["smollm2-135m-instruct"]["path"] = str(folder)
    assert_rejected(
        workdir,
        config,
        f"study.yaml: models.smollm2-135m-instruct.path '{folder}' has no config.json",
        "download it there (hf download ORG/NAME --local-dir FOLDER) or copy the whole model folder there",
    )


def test_a_model_folder_without_weights(study):
    workdir, config = study
    folder = stand_in_model(workdir / "no-weights")
    (folder / "model.safetensors").unlink()
    (folder / "tokenizer.json").write_text("{}")
    config["models"]["smollm2-135m-completion"]["path"] = str(folder)
    assert_rejected(
        workdir,
        config,
        f"models.smollm2-135m-completion.path '{folder}' has no weights files (*.safetensors, *.bin",
    )


def test_study_config_plans_without_a_gpu():
    """snakemake -n --configfile config/config.yaml builds the cluster study's DAG."""
    result = run_snakemake(REPO, "--dry-run", configfile=REPO / "config" / "config.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # 8 models x (8 + 8 topics) x 3 prompt types shards, one service per model.
    assert _count(output, "generate") == 384, output
    assert _count(output, "serve_model") == 8
    assert _count(output, "classify_generated") == 8 * 2
    assert _count(output, "align") == 2


def _count(output: str, rule: str) -> int:
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == rule and fields[1].isdigit():
            return int(fields[1])
    return -1
