import json
import re
import sys
from pathlib import Path

from snakemake.utils import validate

# Rules run the affalign package from this checkout, whatever environment they run in.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from affalign.config.checks import ConfigError, check_config
from affalign.opinions.positional import context_slug, parse_context_slug

CONFIG_SOURCE = ", ".join(str(f) for f in workflow.configfiles) or "the config"

# The schema is the one place config defaults are written: validation fills them in, so
# everything below (and the package, through its from_config constructors) indexes the
# config directly.
try:
    validate(config, schema="../schemas/config.schema.yaml", set_default=True)
except Exception as error:
    raise WorkflowError(f"{CONFIG_SOURCE} is not a valid affalign config:\n{error}")
try:
    check_config(config, CONFIG_SOURCE)
except ConfigError as error:
    raise WorkflowError(str(error))


MODELS = list(config["models"])
ISSUES = list(config["issues"])
CLASSIFIERS = list(config["classifiers"])
PROMPT_TYPES = list(config["prompt_types"])
GROUPS = list(config["groups"])
TOPICS = sorted({t for issue in config["issues"].values() for t in issue["topics"]})
SHARD_KEYS = [
    (issue, topic, prompt_type)
    for issue in ISSUES
    for topic in config["issues"][issue]["topics"]
    for prompt_type in PROMPT_TYPES
]

# Positional alignment (optional): survey topics × contexts, "default" or <method>-<group>.
OPINIONS = config.get("opinions")
SURVEYS = list(OPINIONS["surveys"]) if OPINIONS else []
OPINION_GROUPS = list(OPINIONS["groups"]) if OPINIONS else []
OPINION_CONTEXTS = [
    context_slug(method, group)
    for method in (OPINIONS["contexts"] if OPINIONS else [])
    for group in ([None] if method == "default" else OPINION_GROUPS)
]


def slug_alternatives(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    model=slug_alternatives(MODELS),
    issue=slug_alternatives(ISSUES),
    topic=slug_alternatives(TOPICS),
    prompt_type=slug_alternatives(PROMPT_TYPES),
    classifier=slug_alternatives(CLASSIFIERS),
    survey=slug_alternatives(SURVEYS),
    context=slug_alternatives(OPINION_CONTEXTS),


SHARD_PATTERN = "{issue}/{topic}/{prompt_type}.parquet"


def shard_suffixes():
    return [
        SHARD_PATTERN.format(issue=i, topic=t, prompt_type=p) for i, t, p in SHARD_KEYS
    ]


def generated_shards(model):
    return [f"results/generated/{model}/{suffix}" for suffix in shard_suffixes()]


def affect_shards(classifier, model):
    return [
        f"results/classify/{classifier}/generated/{model}/{suffix}"
        for suffix in shard_suffixes()
    ]


def get_model_shards(wildcards):
    return generated_shards(wildcards.model)


def get_all_generated(wildcards):
    return [path for model in MODELS for path in generated_shards(model)]


def get_all_generated_affect(wildcards):
    return [
        path for model in MODELS for path in affect_shards(wildcards.classifier, model)
    ]


def get_all_human_affect(wildcards):
    return expand(
        "results/classify/{classifier}/human/{issue}.parquet",
        classifier=wildcards.classifier,
        issue=ISSUES,
    )


def get_human_table(wildcards):
    return config["human"][wildcards.issue]["path"]


def get_issue_topics(wildcards):
    return list(config["issues"][wildcards.issue]["topics"])


def get_human_source(wildcards):
    """How the issue's table maps onto posts: columns, where groups and topics come from,
    which URL fields to read (human.<issue> without its path, which is the input)."""
    source = config["human"][wildcards.issue]
    return {
        "columns": dict(source["columns"]),
        "group_from": source["group_from"],
        "topic_from": source["topic_from"],
        "url_fields": list(source["url_fields"]),
    }


def get_human_inputs(wildcards):
    """The issue's table and, when groups come from shared domains, the domain-bias table."""
    inputs = {"table": get_human_table(wildcards)}
    if get_human_source(wildcards)["group_from"] == "domains":
        inputs["domains"] = config["ideology"]["domain_table"]
    return inputs


def get_issue_keywords(wildcards):
    """Topic -> keywords when topics come from keywords; empty otherwise, so that editing
    keywords reruns only the issues that use them."""
    if get_human_source(wildcards)["topic_from"] != "keywords":
        return {}
    topics = config["issues"][wildcards.issue]["topics"]
    return {topic: list(spec["keywords"]) for topic, spec in topics.items()}


def get_ideology_settings(wildcards):
    """The ideology section when the issue's groups come from domains; empty otherwise."""
    if get_human_source(wildcards)["group_from"] != "domains":
        return {}
    return dict(config["ideology"])


def get_topic_assignment(wildcards):
    """Minimum posts per topic and group; the multiple-topic policy when topics come from keywords."""
    settings = config["topic_assignment"]
    chosen = {"min_posts_per_group": settings["min_posts_per_group"]}
    if get_human_source(wildcards)["topic_from"] == "keywords":
        chosen["multiple_topics"] = settings["multiple_topics"]
    return chosen


def model_source(model):
    spec = config["models"][model]
    return spec.get("path") or spec["hub_id"]


def get_model_source(wildcards):
    return model_source(wildcards.model)


def get_model_revision(wildcards):
    """The hub revision; empty for a local folder, which has none."""
    spec = config["models"][wildcards.model]
    return spec["revision"] if "hub_id" in spec else ""


def get_model_engine(wildcards):
    return dict(config["models"][wildcards.model]["engine"])


def get_model_engine_json(wildcards):
    return json.dumps(get_model_engine(wildcards), sort_keys=True)


def get_model_python(wildcards):
    """The interpreter that runs the model server: the one place that decides. It is the
    interpreter running Snakemake (whose environment the pre-run checks saw), never
    whichever `python` comes first on PATH."""
    return sys.executable


def get_package_source(wildcards):
    return str(Path(workflow.basedir) / "src")


def get_model_gpus(wildcards):
    return int(get_model_engine(wildcards)["tensor_parallel_size"])


def get_model_mem_mb(wildcards, attempt):
    return config["models"][wildcards.model]["resources"]["mem_mb"] * attempt


def get_model_runtime(wildcards, attempt):
    return config["models"][wildcards.model]["resources"]["runtime"] * attempt


def get_model_cpus(wildcards):
    return config["models"][wildcards.model]["resources"]["cpus"]


def uses_chat_template(model):
    """models.<m>.chat_template, whose default depends on the kind (so the schema has none)."""
    spec = config["models"][model]
    return spec.get("chat_template", spec["kind"] == "instruct")


def get_generation_params(wildcards):
    """What determines a shard's content; changing any of it regenerates the shard."""
    model = config["models"][wildcards.model]
    issue = config["issues"][wildcards.issue]
    generation = config["generation"]
    return {
        "seed": config["seed"],
        "model_source": model_source(wildcards.model),
        "revision": model["revision"] if "hub_id" in model else None,
        "kind": model["kind"],
        "chat_template": uses_chat_template(wildcards.model),
        "chat_template_kwargs": dict(model["chat_template_kwargs"]),
        "dtype": model["engine"]["dtype"],
        "issue_name": issue["name"],
        "topic_name": issue["topics"][wildcards.topic]["name"],
        "n_per_shard": generation["n_per_shard"],
        "max_tokens": generation["max_tokens"],
        "temperature": generation["temperature"],
        "top_p": generation["top_p"],
    }


def get_classifier_spec(wildcards):
    return dict(config["classifiers"][wildcards.classifier])


def get_classifier_gpus(wildcards):
    """Transformer classifiers ask for a GPU on the cluster; lexicons need none."""
    return 0 if config["classifiers"][wildcards.classifier]["type"] == "lexicon" else 1


def get_align_params(wildcards):
    settings = config["align"]
    return {
        "groups": GROUPS,
        "none_bin": settings["none_bin"],
        "drop_empty": settings["drop_empty"],
        "drop_refusals": settings["drop_refusals"],
        "drop_degenerate": settings["drop_degenerate"],
        "bootstrap_replicates": settings["bootstrap_replicates"],
        "confidence": settings["confidence"],
        "seed": config["seed"],
        "plutchik_smoothing": settings["plutchik_smoothing"],
        "plutchik_weight": settings["plutchik_weight"],
    }


def get_example_topic(wildcards):
    """The issue and topic whose label distributions are drawn (the first configured)."""
    issue = ISSUES[0]
    return {"issue": issue, "topic": next(iter(config["issues"][issue]["topics"]))}


def opinion_shards(model):
    return expand(
        "results/opinions/{model}/{survey}/{context}.parquet",
        model=model,
        survey=SURVEYS,
        context=OPINION_CONTEXTS,
    )


def get_all_opinion_shards(wildcards):
    return [path for model in MODELS for path in opinion_shards(model)]


def get_survey_inputs(wildcards):
    survey = OPINIONS["surveys"][wildcards.survey]
    return {"questions": survey["questions"], "answers": survey["answers"]}


def get_survey_questions(wildcards):
    return OPINIONS["surveys"][wildcards.survey]["questions"]


def get_survey_settings(wildcards):
    """How the survey's answers are read; changing any of it remakes its table."""
    survey = OPINIONS["surveys"][wildcards.survey]
    return {
        "form": survey["form"],
        "groups": OPINION_GROUPS,
        "compare_groups": list(OPINIONS["compare_groups"]),
        "group_column": survey["columns"]["group"],
        "weight_column": survey["columns"]["weight"],
    }


def get_opinion_params(wildcards):
    """What determines an opinion shard's content; changing any of it rescores the shard."""
    model = config["models"][wildcards.model]
    _, group = parse_context_slug(wildcards.context)
    return {
        "model_source": model_source(wildcards.model),
        "revision": model["revision"] if "hub_id" in model else None,
        "kind": model["kind"],
        "chat": OPINIONS["use_chat_template"] and uses_chat_template(wildcards.model),
        "chat_template_kwargs": dict(model["chat_template_kwargs"]),
        "dtype": model["engine"]["dtype"],
        "logprobs": OPINIONS["logprobs"],
        # Only the top-k mode reads it: changing it rescores nothing in exact mode.
        "top_logprobs": (
            OPINIONS["top_logprobs"] if OPINIONS["logprobs"] == "top-k" else None
        ),
        "steering": OPINIONS["groups"][group] if group else None,
    }


def get_final_outputs():
    outputs = []
    for classifier in CLASSIFIERS:
        outputs += [
            f"results/align/{classifier}/alignment.parquet",
            f"results/align/{classifier}/alignment_matrix.csv",
            f"results/align/{classifier}/partisan_baseline.csv",
            f"results/figures/{classifier}/alignment_heatmap.png",
            f"results/figures/{classifier}/baseline_comparison.png",
            f"results/align/{classifier}/liberal_tendency.csv",
            f"results/align/{classifier}/steerability.csv",
        ]
    if OPINIONS:
        outputs += [
            "results/opinions/representativeness.csv",
            "results/opinions/human_baselines.csv",
            "results/opinions/steerability.csv",
            "results/opinions/refusals.csv",
            "results/figures/opinions/representativeness_heatmap.png",
        ]
    return outputs


def leave_unremovable_empty_folders():
    """After a run Snakemake removes the empty folders of missing outputs
    (DAG.cleanup_workdir) and, in 9.27, dies with a traceback that buries the failed job's
    own message when one of them cannot be removed (an output folder the user may not
    write, e.g. one a collaborator made on a shared filesystem). Leave such a folder and
    say so instead."""
    from snakemake.dag import DAG
    from snakemake.logging import logger

    cleanup = DAG.cleanup_workdir
    if getattr(cleanup, "leaves_unremovable_folders", False):
        return

    def tolerant_cleanup(dag):
        try:
            cleanup(dag)
        except OSError as error:
            logger.warning(
                f"affalign: left the empty folder {error.filename}: {error.strerror}"
            )

    tolerant_cleanup.leaves_unremovable_folders = True
    DAG.cleanup_workdir = tolerant_cleanup


leave_unremovable_empty_folders()
