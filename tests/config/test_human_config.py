"""Checks of the human and ideology config before any job (affalign.config.checks directly),
and the settings the human stage reads from a validated config (the schema's defaults)."""

from pathlib import Path

import pytest
from conftest import demo_config, scenario_config, stand_in_model, validated_config

from affalign.config.checks import ConfigError, check_config
from affalign.human.ideology import IdeologySettings, domain_table_options
from affalign.human.source import SourceSpec


@pytest.fixture()
def config(tmp_path: Path) -> dict:
    config = demo_config()
    model_dir = stand_in_model(tmp_path / "model")
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
    check_config(validated_config(config), "study.yaml")


def test_the_current_column_format_still_passes(tmp_path):
    config = demo_config()
    for model in config["models"].values():
        model["path"] = str(stand_in_model(tmp_path / "model"))
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
        check_config(validated_config(config), "study.yaml")
    assert message in str(error.value)
    assert str(error.value).startswith("study.yaml: ")


def test_domain_table_is_only_read_when_an_issue_uses_it(config):
    config["human"]["covid-19"] = demo_config()["human"]["covid-19"]
    config["ideology"]["domain_table"] = "/no/such/bias.csv"
    check_config(validated_config(config), "study.yaml")


def test_the_schema_supplies_every_human_and_ideology_default():
    """The package has no defaults of its own: what a config leaves out comes from the schema."""
    config = demo_config()  # column mode, no ideology section
    assert SourceSpec.from_config(config["human"]["covid-19"]) == SourceSpec(
        columns={"post_id": "post_id", "text": "text", "group": "group", "topic": "topic"},
        group_from="column",
        topic_from="column",
        url_fields=("expanded_url", "unwound_url", "url"),
        drop_unknown_groups=False,
    )
    assert config["topic_assignment"] == {"multiple_topics": "all", "min_posts_per_group": 0}
    assert IdeologySettings.from_config(config["ideology"]) == IdeologySettings(
        scale=(-2.0, 2.0), min_scored_urls=1, liberal_max=-0.5, conservative_min=0.5
    )
    assert domain_table_options(config["ideology"]) == {
        "domain_column": "domain",
        "score_column": "score",
        "category_column": None,
        "categories": {},
        "scale": (-2, 2),
    }


def test_a_category_column_leaves_the_score_column_unset():
    config = demo_config()
    config["ideology"] = {"domain_columns": {"domain": "site", "category": "bias"}, "categories": {"l": -1}}
    options = domain_table_options(validated_config(config)["ideology"])
    assert (options["domain_column"], options["score_column"], options["category_column"]) == (
        "site",
        None,
        "bias",
    )


def test_the_raw_export_scenario_keeps_its_own_settings():
    ideology = scenario_config("raw-export")["ideology"]
    assert IdeologySettings.from_config(ideology).min_scored_urls == 2
    assert domain_table_options(ideology)["category_column"] == "bias"
    assert domain_table_options(ideology)["score_column"] is None
