"""Checks of the human and ideology config before any job (affalign.config.checks directly)."""

from pathlib import Path

import pytest
from conftest import demo_config

from affalign.config.checks import ConfigError, check_config


@pytest.fixture()
def config(tmp_path: Path) -> dict:
    config = demo_config()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for model in config["models"].values():
        model["path"] = str(model_dir)
    export = tmp_path / "export.jsonl"
    export.write_text(
        '{"id_str": "1", "full_text": "mask", "user": {"id_str": "a"}, "entities": {"urls": []}}\n'
    )
    config["human"]["covid-19"] = {
        "path": str(export),
        "columns": {
            "post_id": "id_str",
            "text": ["full_text", "text"],
            "user": "user.id_str",
            "urls": "entities.urls",
        },
        "group_from": "domains",
        "topic_from": "keywords",
    }
    bias = tmp_path / "bias.csv"
    bias.write_text("domain,bias\na.com,left\nb.com,right\n")
    config["ideology"] = {
        "domain_table": str(bias),
        "domain_columns": {"domain": "domain", "category": "bias"},
        "categories": {"left": -2, "right": 2},
    }
    return config


def test_a_valid_raw_setup_passes(config):
    check_config(config, "study.yaml")


def test_the_current_column_format_still_passes():
    config = demo_config()
    for model in config["models"].values():
        model["path"] = "/"
    check_config(config, "study.yaml")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["ideology"].pop("categories"),
            "study.yaml: ideology.domain_columns.category is set, so ideology.categories must map",
        ),
        (
            lambda c: c["ideology"].update(domain_table="/no/such/bias.csv"),
            "study.yaml: ideology.domain_table '/no/such/bias.csv' does not exist",
        ),
        (
            lambda c: c["ideology"]["categories"].update(left=-3),
            "ideology.categories.left = -3 is outside ideology.scale [-2, 2]",
        ),
        (
            lambda c: c["ideology"]["categories"].pop("right"),
            "column 'bias' row 2: category 'right' is not in ideology.categories (['left'])",
        ),
        (
            lambda c: c["ideology"].update(scale=[-1, 1]),
            "ideology.categories.left = -2 is outside ideology.scale [-1, 1]",
        ),
        (
            lambda c: c["ideology"].update(conservative_min=5),
            "study.yaml: ideology.conservative_min 5 is outside ideology.scale [-2, 2]",
        ),
        (
            lambda c: c["human"]["covid-19"]["columns"].pop("urls"),
            "group_from is 'domains' but config key human.covid-19.columns.urls is not set",
        ),
        (
            lambda c: c["human"]["covid-19"]["columns"].update(text=["body", "content"]),
            "none of the columns ['body', 'content'] (for 'text', config key human.covid-19.columns.text)",
        ),
    ],
)
def test_config_errors_name_the_key(config, change, message):
    change(config)
    with pytest.raises(ConfigError) as error:
        check_config(config, "study.yaml")
    assert message in str(error.value)
    assert str(error.value).startswith("study.yaml: ")


def test_domain_table_is_only_read_when_an_issue_uses_it(config):
    config["human"]["covid-19"] = demo_config()["human"]["covid-19"]
    config["ideology"]["domain_table"] = "/no/such/bias.csv"
    check_config(config, "study.yaml")
