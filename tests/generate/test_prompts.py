from pathlib import Path

import pytest

from affalign.generate.prompts import PromptError, ShardSpec, build_requests, load_templates
from affalign.io import derive_seed

REPO = Path(__file__).resolve().parents[2]
POOLS = load_templates(REPO / "resources" / "prompts.yaml")


def shard(**changes):
    arguments = dict(
        global_seed=11,
        model="m",
        kind="instruct",
        issue="covid-19",
        issue_name="COVID-19",
        topic="masks",
        topic_name="mask mandates",
        prompt_type="default",
        count=30,
    )
    arguments.update(changes)
    return build_requests(POOLS, ShardSpec(**arguments))


def test_project_pools_have_ten_templates_each():
    assert {kind: {mode: len(t) for mode, t in modes.items()} for kind, modes in POOLS.items()} == {
        "base": {"default": 10, "steered": 10},
        "instruct": {"default": 10, "steered": 10},
    }


def test_steered_prompts_name_the_group_and_default_prompts_do_not():
    steered = shard(prompt_type="conservative")
    assert all("conservative" in r.prompt for r in steered)
    assert all(r.template_id.startswith("instruct-steered") for r in steered)
    default = shard()
    assert all("conservative" not in r.prompt and "liberal" not in r.prompt for r in default)
    assert all("mask mandates" in r.prompt for r in default)


def test_base_prompts_are_completion_prefixes():
    requests = shard(kind="base")
    assert all(r.template_id.startswith("base-default") for r in requests)
    assert all(r.prompt.endswith(":") for r in requests)


def test_seeds_and_templates_are_reproducible_and_independent_of_shard_size():
    first, again, longer = shard(), shard(), shard(count=60)
    assert first == again
    assert longer[:30] == first
    assert len({r.seed for r in longer}) == 60
    assert len({r.template_id for r in longer}) > 5


def test_seeds_differ_between_models_and_prompt_types():
    assert [r.seed for r in shard()] != [r.seed for r in shard(model="other")]
    assert [r.seed for r in shard()] != [r.seed for r in shard(prompt_type="liberal")]
    assert derive_seed(1, "a", 2) == derive_seed(1, "a", 2) != derive_seed(2, "a", 2)


def test_template_file_errors_name_the_pool(tmp_path):
    bad = tmp_path / "prompts.yaml"
    text = (REPO / "resources" / "prompts.yaml").read_text()
    head, steered = text.split("  steered:", 1)
    bad.write_text(head + "  steered:" + steered.replace("{group}", "{party}", 1))
    with pytest.raises(PromptError, match=r"base\.steered\[0\].*unknown placeholders \['party'\]"):
        load_templates(bad)
