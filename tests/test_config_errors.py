"""Bad input stops the run before any job, names the file and key, and overwrites nothing."""

from pathlib import Path

from conftest import REPO, run_snakemake, write_config


def assert_rejected(workdir: Path, config: dict, *fragments: str) -> str:
    configfile = write_config(workdir / "study.yaml", config)
    sentinel = workdir / "results" / "align" / "nrc-emotion" / "alignment.csv"
    sentinel.parent.mkdir(parents=True, exist_ok=True)
    sentinel.write_text("earlier results\n")
    result = run_snakemake(workdir, configfile=configfile)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in fragments:
        assert fragment in output, output
    assert sentinel.read_text() == "earlier results\n"
    assert not (workdir / "results" / "generated").exists()
    return output


def test_valid_config_plans(study):
    workdir, config = study
    configfile = write_config(workdir / "study.yaml", config)
    result = run_snakemake(workdir, "--dry-run", configfile=configfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_classifier_type(study):
    workdir, config = study
    config["classifiers"]["emotions-bert"] = {"type": "spanemo", "model": "x"}
    expected = "'spanemo' is not one of ['lexicon', 'hf', 'hf-binary-set']"
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
