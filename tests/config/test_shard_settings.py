"""What a shard depends on, pinned: the params the workflow records for its model-side jobs
and hands them as JSON.

Snakemake's params trigger compares the repr of these dicts (keys, their order, values)
with the one it recorded when the shard was made, and the shard store key hashes them: a
change here reruns every finished shard of every study. The strings below are what the
workflow recorded for the demo (config/demo.yaml), the LLM-classifier scenario and an
endpoint model before the constructors moved into the package (align and design: before their params did).
"""

from __future__ import annotations

import ast
import json
import shlex

import pytest
import yaml
from conftest import REPO, SCENARIOS, run_snakemake, validated_config, write_config

from affalign.align import AlignSettings, align_params
from affalign.classify import classifier_spec, llm_classifier_settings
from affalign.classify.llm import LOGPROBS_METHOD
from affalign.config import ModelIdentity, hub_commits
from affalign.design import DesignSettings, design_params
from affalign.generate import GenerationSettings
from affalign.io import file_sha256
from affalign.opinions import OpinionSettings, survey_settings

STEERING = (
    "{'qa': {'question': 'In general, would you describe your political views as', 'options': "
    "['Very conservative', 'Conservative', 'Moderate', 'Liberal', 'Very liberal', 'Refused'], "
    "'answer': 'Conservative'}, 'bio': 'In general, I would describe my political views as conservative.', "
    "'portray': 'in general, you would describe your political views as conservative'}"
)
GENERATION = (
    "{'seed': 20240214, 'model_source': 'resources/models/SmolLM2-135M-Instruct', 'revision': None, "
    "'kind': 'base', 'chat_template': False, 'chat_template_kwargs': {}, 'dtype': 'float32', "
    "'generation_config': 'vllm', 'issue_name': 'COVID-19', "
    "'topic_name': 'lockdowns and stay-at-home orders', "
    "'n_per_shard': 24, 'max_tokens': 40, 'temperature': 1.0, 'top_p': 0.95}"
)
OPINION = (
    "{'model_source': 'resources/models/SmolLM2-135M-Instruct', 'revision': None, 'kind': 'base', "
    "'chat': False, 'chat_template_kwargs': {}, 'dtype': 'float32', 'logprobs': 'exact', "
    "'top_logprobs': None, "
    f"'steering': {STEERING}}}"
)
SURVEY = (
    "{'form': 'responses', 'groups': ['liberal', 'conservative'], 'compare_groups': [], "
    "'group_column': 'ideology', 'weight_column': 'weight'}"
)
ENDPOINT = "{'base_url': 'http://127.0.0.1:9/v1', 'model': 'provider/model-x'}"
ENDPOINT_GENERATION = (
    "{'seed': 20240214, 'model_source': 'endpoint provider/model-x at http://127.0.0.1:9/v1', "
    "'revision': None, "
    "'kind': 'instruct', 'chat_template': True, 'chat_template_kwargs': {}, 'dtype': None, "
    "'generation_config': 'vllm', 'issue_name': 'COVID-19', "
    "'topic_name': 'lockdowns and stay-at-home orders', "
    f"'n_per_shard': 24, 'max_tokens': 40, 'temperature': 1.0, 'top_p': 0.95, 'endpoint': {ENDPOINT}}}"
)
ENDPOINT_OPINION = (
    "{'model_source': 'endpoint provider/model-x at http://127.0.0.1:9/v1', 'revision': None, "
    "'kind': 'instruct', "
    "'chat': False, 'chat_template_kwargs': {}, 'dtype': None, 'logprobs': 'auto', 'top_logprobs': 20, "
    f"'steering': {STEERING}, 'endpoint': {ENDPOINT}}}"
)
ALIGN = (
    "{'groups': ['liberal', 'conservative'], 'none_bin': False, 'drop_empty': True, 'drop_refusals': True, "
    "'drop_degenerate': False, 'bootstrap_replicates': 200, 'confidence': 0.95, 'permutations': 199, "
    "'alpha': 0.05, 'seed': 20240214, 'plutchik_smoothing': False, 'plutchik_weight': 0.1}"
)
DESIGN = (
    "{'n_per_shard': 24, 'groups': ['liberal', 'conservative'], 'confidence': 0.95, 'alpha': 0.05, "
    "'bootstrap_replicates': 200, 'draws': 100, 'seed': 20240214, 'none_bin': False}"
)
LLM_LABELS = (
    "{'anger': 'the writer is angry, annoyed or outraged', 'anticipation': 'the writer looks forward to or "
    "expects something', 'disgust': 'the writer is disgusted or repelled', 'fear': 'the writer is afraid, "
    "worried or anxious', 'joy': 'the writer is happy, pleased or relieved', 'sadness': 'the writer is sad, "
    "disappointed or grieving', 'surprise': 'the writer is surprised or astonished', 'trust': 'the writer "
    "trusts or relies on someone or something'}"
)
LLM_CLASSIFIER = (
    "{'model': 'smollm2-135m-instruct', 'model_source': 'resources/models/SmolLM2-135M-Instruct', "
    "'revision': None, 'dtype': 'float32', 'generation_config': 'vllm', 'chat': True, "
    "'chat_template_kwargs': {}, "
    f"'labels': {LLM_LABELS}, 'prompt': 'resources/classifier_prompts/labels.txt', "
    "'prompt_sha256': 'ab4bbdd25cbae2e0875f63a3e1b76d725a5cc7ceff1afdcf2e68ab4c9523963f', "
    "'method': 'structured-output: JSON object of one boolean per label (regex-constrained)', "
    "'seed': 20240214, 'max_tokens': 96}"
)


def config_as_the_workflow_reads(path) -> dict:
    """A config file validated (defaults filled in), its paths as written: relative to the
    repository root, as the workflow records them."""
    return validated_config(yaml.safe_load(path.read_text()))


@pytest.fixture()
def demo(monkeypatch) -> dict:
    monkeypatch.chdir(REPO)  # relative paths (the prompt file's hash) as the workflow reads them
    return config_as_the_workflow_reads(REPO / "config" / "demo.yaml")


def with_endpoint(config: dict) -> dict:
    config = json.loads(json.dumps(config))
    config["models"]["hosted"] = {
        "kind": "instruct",
        "endpoint": {
            "base_url": "http://127.0.0.1:9/v1",
            "model": "provider/model-x",
            "api_key_env": "KEY",
            "request_budget": 100_000,
        },
    }
    return validated_config(config)


def identity(config: dict, model: str) -> ModelIdentity:
    return ModelIdentity.from_config(config, model, lock={})


def test_generation_settings_of_the_demo_are_pinned(demo):
    model = "smollm2-135m-completion"
    settings = GenerationSettings.from_config(demo, model, "covid-19", "lockdowns", identity(demo, model))
    assert repr(settings.params()) == GENERATION
    assert GenerationSettings.from_params(settings.params()) == settings


def test_opinion_and_survey_settings_of_the_demo_are_pinned(demo):
    model = "smollm2-135m-completion"
    settings = OpinionSettings.from_config(demo, model, "bio-conservative", identity(demo, model))
    assert repr(settings.params()) == OPINION
    assert OpinionSettings.from_params(settings.params()) == settings
    assert repr(survey_settings(demo, "economy")) == SURVEY


def test_align_and_design_settings_of_the_demo_are_pinned_and_read_back(demo):
    assert repr(align_params(demo)) == ALIGN
    assert repr(design_params(demo)) == DESIGN
    align = AlignSettings.from_params(align_params(demo))
    assert align.groups == ("liberal", "conservative") and align.policy.flags() == ["is_empty", "is_refusal"]
    bootstrap = align.bootstrap
    assert (bootstrap.replicates, bootstrap.seed, bootstrap.permutations) == (200, 20240214, 199)
    # The configured weight is recorded, but smoothing off means no smoothing.
    assert align.plutchik_weight is None
    smoothed = {**demo, "align": {**demo["align"], "plutchik_smoothing": True, "plutchik_weight": 0.3}}
    assert AlignSettings.from_params(align_params(smoothed)).plutchik_weight == 0.3
    design = DesignSettings.from_params(design_params(demo))
    assert (design.n_per_shard, design.replicates, design.draws, design.seed) == (24, 200, 100, 20240214)


def test_an_endpoint_model_records_its_endpoint_instead_of_revision_and_dtype(demo):
    config = with_endpoint(demo)
    hosted = identity(config, "hosted")
    generation = GenerationSettings.from_config(config, "hosted", "covid-19", "lockdowns", hosted)
    assert repr(generation.params()) == ENDPOINT_GENERATION
    opinion = OpinionSettings.from_config(config, "hosted", "bio-conservative", hosted)
    assert repr(opinion.params()) == ENDPOINT_OPINION


def test_classifier_specs_are_pinned_and_hub_models_get_their_locked_commits(demo, tmp_path, monkeypatch):
    # A local folder whose name looks like a hub id; made here, as a clean checkout has none.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resources" / "models").mkdir(parents=True)
    assert repr(classifier_spec(demo, "mfd2", hub_commits({}))) == "{'type': 'lexicon', 'lexicon': 'mfd2'}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    config = {
        "classifiers": {
            "one": {"type": "hf", "model": "org/one"},
            "set": {
                "type": "hf-binary-set",
                "models": {"a": "org/a", "b": "resources/models"},
                "revisions": {"a": "v2"},
            },
        }
    }
    lock = {("org/one", "main"): commit, ("org/a", "v2"): commit}
    assert classifier_spec(config, "one", hub_commits(lock)) == {
        "type": "hf",
        "model": "org/one",
        "revision": commit,
    }
    # A local folder (resources/models, which looks like a hub id) has no commit to lock.
    assert classifier_spec(config, "set", hub_commits(lock))["revisions"] == {"a": commit}


def test_llm_classifier_settings_are_pinned(monkeypatch):
    monkeypatch.chdir(REPO)
    config = config_as_the_workflow_reads(SCENARIOS / "llm-classifier" / "config.yaml")
    judge = config["classifiers"]["smollm2-judge"]["model"]
    settings = llm_classifier_settings(config, "smollm2-judge", identity(config, judge))
    assert repr(settings) == LLM_CLASSIFIER


def test_a_logprobs_classifier_records_its_method_and_threshold_instead_of_max_tokens(monkeypatch):
    # classifiers.<c>.method came after the pin above: a structured classifier (the default)
    # records what it did before, so finished studies keep their affect files; a logprobs
    # one records its own method and threshold (max_tokens decides nothing there).
    monkeypatch.chdir(REPO)
    raw = yaml.safe_load((SCENARIOS / "llm-classifier" / "config.yaml").read_text())
    judge_spec = raw["classifiers"]["smollm2-judge"]
    judge_spec.pop("prompt", None)
    judge_spec.update(method="logprobs", threshold=0.4)
    config = validated_config(raw)
    judge = judge_spec["model"]
    settings = llm_classifier_settings(config, "smollm2-judge", identity(config, judge))
    expected = ast.literal_eval(LLM_CLASSIFIER)  # the pinned repr above
    del expected["max_tokens"]
    expected.update(
        prompt="resources/classifier_prompts/yes-no.txt",
        prompt_sha256=file_sha256(REPO / "resources/classifier_prompts/yes-no.txt"),
        method=LOGPROBS_METHOD,
        threshold=0.4,
    )
    assert repr(settings) == repr(expected)
    assert list(settings)[-2:] == ["seed", "threshold"]


def test_a_shard_job_receives_the_settings_as_json_keys_sorted(study):
    # Through the workflow: the dry run's command of one generation shard and one opinion
    # shard carries exactly the constructors' params (common.smk only calls them).
    workdir, config = study
    configfile = write_config(workdir / "study.yaml", config)
    model = "smollm2-135m-completion"
    targets = [
        f"results/generated/{model}/covid-19/lockdowns/default.parquet",
        f"results/opinions/{model}/economy/bio-conservative.parquet",
    ]
    run = run_snakemake(workdir, "-n", "-p", "--", *targets, configfile=configfile)
    assert run.returncode == 0, run.stderr[-3000:]
    settings = {}
    for line in run.stdout.splitlines():
        if "--settings" in line:
            words = shlex.split(line)
            module = words[words.index("-m") + 1]
            settings[module] = words[words.index("--settings") + 1]
    ident = identity(validated_config(config), model)
    generation = GenerationSettings.from_config(config, model, "covid-19", "lockdowns", ident)
    opinion = OpinionSettings.from_config(config, model, "bio-conservative", ident)
    assert settings == {
        "affalign.generate.job": json.dumps(generation.params(), sort_keys=True),
        "affalign.opinions.job": json.dumps(opinion.params(), sort_keys=True),
    }
