import json
import sys
from pathlib import Path

# Rules run the affalign package from this checkout, whatever environment they run in.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

# Config, validation and the steps before any job runs (affalign.config).
from affalign.config import STOPS_THE_RUN, check_config, check_config_files
from affalign.config import check_runtime, validate_config, check_snakemake_version
from affalign.config import selected_models, names_pattern
from affalign.config import locked_weights, hub_commits, apply_snakemake_patches
from affalign.config import endpoint_specs, endpoint_models, register_endpoint_limits
from affalign.config import preflight_endpoints, self_classification_warnings

# Models, classifiers, their jobs' interpreter and resources.
from affalign.config import ModelIdentity, LLMClassifiers, model_source, runtime_python
from affalign.config import runtime_device, gpu_partition, model_partition
from affalign.config import classifier_partition, server_resources, endpoint_resources
from affalign.config import detection_file, judge_endpoint_resources

# What reruns: recorded params, unrecorded operations; what each job's output depends on.
from affalign.config import json_params, unrecorded, consumer_operations
from affalign.config import human_inputs, human_source, issue_keywords
from affalign.config import ideology_settings, topic_assignment, gpu_hours_by_shard_size
from affalign.classify import classifier_spec, llm_classifier_settings
from affalign.classify import classifier_labels
from affalign.align import align_params
from affalign.design import design_params
from affalign.generate import GenerationSettings
from affalign.opinions import OpinionSettings, context_slug, survey_settings
from snakemake.logging import logger

# --- Config and validation ---------------------------------------------------------------


def stop_on_error(step, *args, **kwargs):
    """A pre-run step of affalign.config: its error stops the workflow with its message
    alone (Snakemake would print a traceback, or the whole schema)."""
    try:
        return step(*args, **kwargs)
    except STOPS_THE_RUN as error:
        raise WorkflowError(str(error))


# The patches (below) are written for one Snakemake release: another stops the run before
# anything else, a config error included, is looked at.
stop_on_error(check_snakemake_version)

# The study config is the default; --configfile replaces it instead of merging into it.
# Snakemake's reader keeps the last of two equal keys without a word: read strictly first.
DEFAULT_CONFIGFILE = "config/config.yaml"
if workflow.overwrite_configfiles:
    stop_on_error(check_config_files, workflow.overwrite_configfiles)
else:
    if Path(DEFAULT_CONFIGFILE).is_file():
        stop_on_error(check_config_files, [DEFAULT_CONFIGFILE])

    configfile: DEFAULT_CONFIGFILE


CONFIG_SOURCE = ", ".join(str(f) for f in workflow.configfiles) or "the config"

# The schema is the one place config defaults are written: validation fills them in, so
# everything below (and the package's from_config constructors) indexes the config
# directly. (`affalign check` runs the same checks outside Snakemake.)
stop_on_error(validate_config, config, CONFIG_SOURCE)
stop_on_error(check_config, config, CONFIG_SOURCE)
# A runtime interpreter that does not exist would fail every model job only after it
# waited in the GPU queue.
stop_on_error(check_runtime, config, CONFIG_SOURCE)

# Hub id and revision -> the commit jobs load; before anything is submitted every hub
# weight must be locked and cached (a dry run only warns; a job on a node reads the lock).
WEIGHTS_LOCK = stop_on_error(
    locked_weights,
    config,
    config_source=CONFIG_SOURCE,
    main_process=workflow.is_main_process,
    argv=sys.argv,
    warn=logger.warning,
)


# --- Constants and wildcard constraints ---------------------------------------------------

# only_models (--config only_models=[a,b]) runs a subset as if the config listed no others.
MODELS = list(selected_models(config))
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

# Endpoint models (models.<m>.endpoint): servers that already run, called by their shard
# jobs directly (rules generate_endpoint, opinion_shard_endpoint), and by the classification
# jobs of the LLM classifiers they judge for (whatever only_models selects).
ENDPOINTS = endpoint_specs(config, endpoint_models(config))
# LLM classifiers (type: llm) by where their judge runs: served (serve_judge) or an endpoint
# (rules *_llm_endpoint); gold: checked against human-labelled posts (classifiers.<c>.gold).
LLM = LLMClassifiers.from_config(config)
GOLD_CLASSIFIERS = [n for n, c in config["classifiers"].items() if "gold" in c]


for warning in self_classification_warnings(config, MODELS):
    logger.warning(warning)


ENDPOINT_MODELS = names_pattern(ENDPOINTS)
LLM_CLASSIFIER_NAMES = names_pattern(LLM.served)
ENDPOINT_LLM_CLASSIFIER_NAMES = names_pattern(LLM.endpoint)
JUDGE_NAMES = names_pattern(LLM.judges)
GOLD_CLASSIFIER_NAMES = names_pattern(GOLD_CLASSIFIERS)


wildcard_constraints:
    model=names_pattern(MODELS),
    issue=names_pattern(ISSUES),
    topic=names_pattern(TOPICS),
    prompt_type=names_pattern(PROMPT_TYPES),
    classifier=names_pattern(CLASSIFIERS),
    survey=names_pattern(SURVEYS),
    context=names_pattern(OPINION_CONTEXTS),


# --- Snakemake's behaviour, changed in one place (see affalign.config.snakemake_patches) --

stop_on_error(
    apply_snakemake_patches,
    [f"results/services/{model}.json" for model in MODELS]
    + [f"results/services/judge/{model}.json" for model in LLM.judges],
)


# Each endpoint's limit as a resource, of which its shard jobs hold shares.
register_endpoint_limits(workflow, ENDPOINTS)


def check_endpoint_run():
    """Before any job starts: endpoint budgets, and each endpoint's log-probability method."""
    if not ENDPOINTS:
        return
    jobs = [(job.rule.name, job.wildcards_dict) for job in workflow.dag.needrun_jobs()]
    stop_on_error(preflight_endpoints, config, ENDPOINTS, jobs, log=logger.info)


onstart:
    check_endpoint_run()


# --- Input functions: paths and human posts ---------------------------------------------


def shard_suffixes():
    return [f"{i}/{t}/{p}.parquet" for i, t, p in SHARD_KEYS]


def get_model_shards(wildcards):
    return [f"results/generated/{wildcards.model}/{s}" for s in shard_suffixes()]


def get_all_generated(wildcards):
    return [f"results/generated/{m}/{s}" for m in MODELS for s in shard_suffixes()]


def affect_shards(classifier, model):
    return [
        f"results/classify/{classifier}/generated/{model}/{s}" for s in shard_suffixes()
    ]


def get_all_generated_affect(wildcards):
    return [p for m in MODELS for p in affect_shards(wildcards.classifier, m)]


def get_all_human_affect(wildcards):
    return [
        f"results/classify/{wildcards.classifier}/human/{i}.parquet" for i in ISSUES
    ]


def get_all_opinion_shards(wildcards):
    return expand(
        "results/opinions/{model}/{survey}/{context}.parquet",
        model=MODELS,
        survey=SURVEYS,
        context=OPINION_CONTEXTS,
    )


def get_all_model_shards(wildcards):
    """Every shard a model wrote: generated posts and, with opinions, scored surveys."""
    return get_all_generated(wildcards) + get_all_opinion_shards(wildcards)


def opinion_store(wildcards):
    """Where finished opinion shards are kept: unrecorded, as it was when the store came
    in (generate.smk's is recorded; changing either would rerun every shard of a kind).
    """
    return f"results/.shard-store/opinions/{wildcards.model}"


def get_final_outputs():
    outputs = []
    for c in CLASSIFIERS:
        outputs += [
            f"results/align/{c}/alignment.parquet",
            f"results/align/{c}/alignment_matrix.csv",
            f"results/align/{c}/partisan_baseline.csv",
            f"results/figures/{c}/alignment_heatmap.png",
            f"results/figures/{c}/baseline_comparison.png",
            f"results/align/{c}/liberal_tendency.csv",
            f"results/align/{c}/steerability.csv",
            f"results/design/{c}/summary.csv",
            f"results/figures/{c}/design.png",
        ]
    outputs += [f"results/align/{c}/gold_f1.csv" for c in GOLD_CLASSIFIERS]
    outputs.append("results/align/label_samples.csv")
    if len(CLASSIFIERS) >= 2:
        outputs.append("results/align/robustness.csv")
    if OPINIONS:
        outputs += [
            "results/opinions/representativeness.csv",
            "results/opinions/human_baselines.csv",
            "results/opinions/steerability.csv",
            "results/opinions/refusals.csv",
            "results/figures/opinions/representativeness_heatmap.png",
        ]
    return outputs + ["results/services/job_account.csv"]


def get_issue_topics(wildcards):
    return list(config["issues"][wildcards.issue]["topics"])


def per_issue(function):
    """An input function of ingest_human, function(config, issue)."""
    return lambda wildcards: function(config, wildcards.issue)


# --- Input functions: models, their servers and resources -------------------------------


def model_identity(model):
    return ModelIdentity.from_config(config, model, WEIGHTS_LOCK)


def get_model_source(wildcards):
    return model_source(config["models"][wildcards.model])


def get_model_revision(wildcards):
    """The hub commit (locked); empty for a local folder, which has none."""
    return model_identity(wildcards.model).revision or ""


def get_model_engine_json(wildcards):
    return json.dumps(dict(config["models"][wildcards.model]["engine"]), sort_keys=True)


def get_model_python(wildcards):
    """The interpreter of model-side jobs: the one place that decides (runtime.python)."""
    return runtime_python(config)


def get_runtime_device(wildcards):
    return runtime_device(config)


def get_package_source(wildcards):
    return str(Path(workflow.basedir) / "src")


def get_consumer_operations(wildcards):
    """How a shard consumer runs (generation.* limits, an endpoint's settings): unrecorded."""
    return consumer_operations(config, config["models"][wildcards.model])


# The same partition for a model's server and every consumer of its service group.
get_model_partition = model_partition(config)
# A model server's GPUs, memory, runtime and SLURM flags (rules serve_model, serve_judge).
SERVER_RESOURCES = server_resources(config)
# endpoint_<model> -> an endpoint shard job's share of its endpoint's limit.
ENDPOINT_RESOURCES = endpoint_resources(ENDPOINTS)
# The same for an endpoint judge's classification jobs (keyed by the classifier's judge).
JUDGE_ENDPOINT_RESOURCES = judge_endpoint_resources(config, ENDPOINTS)


def judge_of(wildcards):
    return config["classifiers"][wildcards.classifier]["model"]


def judge_service(wildcards):
    return f"results/services/judge/{judge_of(wildcards)}.json"


def judge_server_log(wildcards):
    return f"logs/serve_judge/{judge_of(wildcards)}.server.log"


def judge_partition(wildcards):
    return gpu_partition(config["models"][judge_of(wildcards)]["resources"])


def get_judge_operations(wildcards):
    """How an endpoint judge's classification job runs (its endpoint's settings): unrecorded."""
    return consumer_operations(config, config["models"][judge_of(wildcards)])


# --- Input functions: what a job's output depends on (recorded: a change reruns it) -----


def get_generation_params(wildcards):
    w = wildcards
    identity = model_identity(w.model)
    return GenerationSettings.from_config(
        config, w.model, w.issue, w.topic, identity
    ).params()


def get_opinion_params(wildcards):
    return OpinionSettings.from_config(
        config, wildcards.model, wildcards.context, model_identity(wildcards.model)
    ).params()


def get_survey_inputs(wildcards):
    survey = OPINIONS["surveys"][wildcards.survey]
    return {"questions": survey["questions"], "answers": survey["answers"]}


def get_survey_questions(wildcards):
    return OPINIONS["surveys"][wildcards.survey]["questions"]


def get_survey_settings(wildcards):
    return survey_settings(config, wildcards.survey)


def get_classifier_spec(wildcards):
    return classifier_spec(config, wildcards.classifier, hub_commits(WEIGHTS_LOCK))


def get_llm_classifier_settings(wildcards):
    return llm_classifier_settings(
        config, wildcards.classifier, model_identity(judge_of(wildcards))
    )


def get_gold_file(wildcards):
    return config["classifiers"][wildcards.classifier]["gold"]


def get_classifier_labels(wildcards):
    return list(classifier_labels(config["classifiers"][wildcards.classifier]))


def get_classifier_gpus(wildcards):
    """Transformer classifiers ask for a GPU on the cluster; lexicons need none."""
    return 0 if config["classifiers"][wildcards.classifier]["type"] == "lexicon" else 1


def get_classifier_python(wildcards):
    """Transformer classifiers: the model runtime; lexicons: Snakemake's (with their wheels)."""
    return runtime_python(config) if get_classifier_gpus(wildcards) else sys.executable


def get_classifier_partition(wildcards):
    return classifier_partition(get_classifier_gpus(wildcards) > 0)


def get_align_params(wildcards):
    return align_params(config)


def get_design_params(wildcards):
    return design_params(config)


def get_example_topic(wildcards):
    """The issue and topic whose label distributions are drawn (the first configured)."""
    issue = ISSUES[0]
    return {"issue": issue, "topic": next(iter(config["issues"][issue]["topics"]))}
