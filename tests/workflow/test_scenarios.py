"""The .test scenarios: each one plans from the repository root exactly as a newcomer runs it,
and each differs from the demo only in what it is about."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, SCENARIOS, job_counts, run_snakemake, scenario_names, stand_in_model

# What each scenario changes in the demo study (a dotted key: one key of a section).
CHANGES = {
    "demo": set(),
    "raw-export": {"human", "ideology", "topic_assignment"},
    "top-k-opinions": {"opinions.logprobs", "opinions.top_logprobs"},
    "llm-classifier": {"classifiers"},
}
# The demo study: 2 models x 6 topics x 3 prompt types; 2 surveys x 7 contexts per model.
DEMO_JOBS = {
    "ingest_human": 2,
    "serve_model": 2,
    "generate": 36,
    "classify_generated": 4,
    "opinion_shard": 28,
}

# Classifiers with a gold file (classifiers.<c>.gold): only llm-classifier has any (the demo
# keeps its time). Its lexicon labels the gold posts with classify_gold, its judge with
# classify_gold_llm (a consumer of the judge's server), and each gets a gold_f1.csv.
GOLD_RULES = ("gold_posts", "classify_gold", "classify_gold_llm", "gold_f1")
GOLD_JOBS = {
    "llm-classifier": {"gold_posts": 2, "classify_gold": 1, "classify_gold_llm": 1, "gold_f1": 2},
}


def raw_config(name: str) -> dict:
    return yaml.safe_load((SCENARIOS / name / "config.yaml").read_text())


def without(config: dict, keys: set[str]) -> dict:
    kept = {key: value for key, value in config.items() if key not in keys}
    for key in keys:
        section, _, inner = key.partition(".")
        if inner:
            kept[section] = {k: v for k, v in kept[section].items() if k != inner}
    return kept


def test_every_scenario_is_described():
    assert scenario_names() == sorted(CHANGES)
    assert (SCENARIOS / "demo" / "config.yaml").resolve() == REPO / "config" / "demo.yaml"


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_scenario_is_the_demo_but_for_what_it_is_about(name):
    scenario, demo = raw_config(name), raw_config("demo")
    changes = CHANGES[name]
    assert without(scenario, changes) == without(demo, changes)
    for key in changes:
        section, _, inner = key.partition(".")
        changed = scenario[section][inner] if inner else scenario[section]
        assert changed != (demo.get(section, {}).get(inner) if inner else demo.get(section)), key


def checkout_like(workdir: Path) -> Path:
    """A working folder where the scenarios' paths (relative to the repository root) resolve:
    the demo data, prompts and scenarios, and stand-ins for the prepared models (not in git)."""
    (workdir / "resources").mkdir()
    for relative in ("resources/demo", "resources/prompts.yaml", "resources/classifier_prompts", ".test"):
        (workdir / relative).symlink_to(REPO / relative)
    for name in CHANGES:
        for model in raw_config(name)["models"].values():
            stand_in_model(workdir / model["path"])
    return workdir


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_scenario_plans_from_the_repository_root(name, tmp_path):
    workdir = checkout_like(tmp_path)
    # The relative path a newcomer types: snakemake --configfile .test/<name>/config.yaml -n
    result = run_snakemake(workdir, "--dry-run", configfile=Path(".test") / name / "config.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    counts = job_counts(result.stdout)
    assert {rule: counts.get(rule) for rule in DEMO_JOBS} == DEMO_JOBS, result.stdout
    gold = {rule: counts[rule] for rule in GOLD_RULES if rule in counts}
    assert gold == GOLD_JOBS.get(name, {}), result.stdout
