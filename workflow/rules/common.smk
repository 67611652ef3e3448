import json
import re
import shlex
import sys
from pathlib import Path

# Rules run the affalign package from this checkout, whatever environment they run in.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from affalign.config import (
    ConfigError,
    check_config,
    check_config_files,
)
from affalign.config.checks import selected_models
from affalign.config.files import validate_config
from affalign.config.cluster import (
    classifier_partition,
    gpu_partition,
    model_slurm_value,
)
from affalign.config.runtime import runtime_device, runtime_problems, runtime_python
from affalign.config.weights import (
    WeightsError,
    check_weights,
    hub_references,
    is_hub_id,
    locked_commit,
    planning_only,
    read_lock,
)
from affalign.opinions.positional import context_slug, parse_context_slug


def read_config_files_strictly(paths):
    """Snakemake's own reader keeps the last of two equal keys without a word and reports
    a syntax error without file or line: read the config files strictly first. (A syntax
    error in a --configfile stops Snakemake before the workflow starts; `python -m
    affalign.config FILE` names its line.)"""
    try:
        check_config_files(paths)
    except ConfigError as error:
        raise WorkflowError(str(error))


# The study config is the default; --configfile replaces it instead of merging into it.
DEFAULT_CONFIGFILE = "config/config.yaml"
if workflow.overwrite_configfiles:
    read_config_files_strictly(workflow.overwrite_configfiles)
else:
    if Path(DEFAULT_CONFIGFILE).is_file():
        read_config_files_strictly([DEFAULT_CONFIGFILE])

    configfile: DEFAULT_CONFIGFILE


CONFIG_SOURCE = ", ".join(str(f) for f in workflow.configfiles) or "the config"

# The schema is the one place config defaults are written: validation fills them in, so
# everything below (and the package, through its from_config constructors) indexes the
# config directly. Snakemake's message prints the whole schema; one line says what to fix.
# (`affalign check` runs the same checks outside Snakemake: affalign.config.preflight.)
try:
    validate_config(config, CONFIG_SOURCE)
    check_config(config, CONFIG_SOURCE)
except ConfigError as error:
    raise WorkflowError(str(error))
# A runtime interpreter that does not exist would fail every model job only after it
# waited in the GPU queue.
if runtime_problems(config, CONFIG_SOURCE):
    raise WorkflowError("\n".join(runtime_problems(config, CONFIG_SOURCE)))


def locked_weights():
    """Hub id and revision -> the commit jobs load (config.weights_lock). Before anything is
    submitted, every hub weight must be locked and in HF_HOME at its commit (`affalign
    weights check`); a dry run only warns, and jobs on a node only read the lock."""
    lock_path = Path(config["weights_lock"])
    try:
        if not hub_references(config):
            return {}
        if not workflow.is_main_process:
            return read_lock(lock_path)
        return check_weights(config, lock_path, configfile=CONFIG_SOURCE)
    except WeightsError as error:
        if not planning_only(sys.argv):
            raise WorkflowError(str(error))
        from snakemake.logging import logger

        logger.warning(f"affalign (dry run): {error}")
        repeat_after_the_job_summary(f"affalign (dry run): {error}")
        return read_lock(lock_path)


def repeat_after_the_job_summary(warning):
    """A pre-flight warning of a dry run, printed again when Snakemake exits: its job
    listing (thousands of lines for a study) scrolls the first one out of sight, and a dry
    run calls no onsuccess/onerror handler (Workflow.execute, Snakemake 9.27)."""
    import atexit

    def repeat():
        print(
            f"\n{warning}\n(repeated from the start of this dry run)", file=sys.stderr
        )

    atexit.register(repeat)


WEIGHTS_LOCK = locked_weights()


def hub_revision(hub_id, revision):
    """The locked commit of a hub id at its configured revision (the revision itself when
    nothing is locked, which only a dry run allows)."""
    return locked_commit(WEIGHTS_LOCK, hub_id, revision) or revision


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
        "drop_unknown_groups": source["drop_unknown_groups"],
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
    if "endpoint" in spec:
        return f"endpoint {spec['endpoint']['model']} at {spec['endpoint']['base_url']}"
    return spec.get("path") or spec["hub_id"]


def get_model_source(wildcards):
    return model_source(wildcards.model)


def get_model_revision(wildcards):
    """The hub commit (locked); empty for a local folder, which has none."""
    spec = config["models"][wildcards.model]
    return hub_revision(spec["hub_id"], spec["revision"]) if "hub_id" in spec else ""


def get_model_engine(wildcards):
    return dict(config["models"][wildcards.model]["engine"])


def get_model_engine_json(wildcards):
    return json.dumps(get_model_engine(wildcards), sort_keys=True)


def get_model_python(wildcards):
    """The interpreter that runs the model server: the one place that decides. It is
    runtime.python of the config (the GPU runtime environment on a cluster), else the
    interpreter running Snakemake (whose environment the pre-run checks saw), never
    whichever `python` comes first on PATH."""
    return runtime_python(config)


def forget_service_record(wildcards):
    """Input function of serve_model that declares no input. Its side effect: it drops
    Snakemake's metadata record of the model's service file when no server is running.
    A service file exists only while its server runs, yet Snakemake keeps the record of
    the params and command that made it; any change to them (an operational setting such
    as generation.server_start_timeout_s or runtime.python, or a new affalign) would mark
    the service as changed and rerun every shard and everything downstream. What a shard
    contains is decided by the shard rules' own params. Without the record Snakemake
    starts a server only when a shard must run (tests/test_workflow_e2e.py checks it).
    """
    service = f"results/services/{wildcards.model}.json"
    persistence = workflow.persistence
    if persistence is not None and not Path(service).exists():
        from snakemake.io import IOFile

        persistence.cleanup_metadata(IOFile(service))
    return []


def get_runtime_device(wildcards):
    """runtime.device: auto, cuda or cpu (what a job given GPUs must be able to use)."""
    return runtime_device(config)


def get_package_source(wildcards):
    return str(Path(workflow.basedir) / "src")


# Model-side jobs are shell rules that run `python -m affalign.<stage>.job` with the
# interpreter above (a script: rule always runs Snakemake's own). Two kinds of values reach
# their command line, and Snakemake's rerun triggers must tell them apart: its params
# trigger records repr() of every params value of a builtin type and leaves out values of
# any other type (snakemake/persistence/__init__.py: Persistence._params and
# _serialize_param_builtin, UNREPRESENTABLE), and its code trigger compares the shell
# command's text before formatting (Persistence._code).


class JsonParams(dict):
    """What determines a job's output, as a dict: recorded by the params trigger exactly as
    a plain dict (the repr is dict's), written into the command as JSON."""

    def __format__(self, spec):
        return format(json.dumps(self, sort_keys=True), spec)


def json_params(function):
    """A params function whose dict goes into the job's command as JSON."""
    return lambda wildcards: JsonParams(function(wildcards))


class Unrecorded:
    """A command-line value that changes how a job runs, never what it writes (the
    interpreter, the checkout's src/, requests in flight, timeouts, an endpoint's limits and
    key variable): not a builtin type, so invisible to the params trigger, and absent from
    the command's text, so changing it reruns nothing. Formats as its text."""

    def __init__(self, text):
        self.text = str(text)

    def __format__(self, spec):
        return format(self.text, spec)

    def __repr__(self):
        return f"Unrecorded({self.text!r})"


def unrecorded(function):
    """A params function whose value the rerun triggers do not see."""
    return lambda wildcards: Unrecorded(function(wildcards))


def get_consumer_operations(wildcards):
    """The shard consumers' operational flags (generation.* and an endpoint's settings),
    quoted for the shell."""
    generation = config["generation"]
    flags = [
        "--max-in-flight",
        generation["max_in_flight"],
        "--server-start-timeout",
        generation["server_start_timeout_s"],
        "--request-timeout",
        generation["request_timeout_s"],
    ]
    entry = config["models"][wildcards.model]
    if "endpoint" in entry:
        flags += ["--endpoint", json.dumps(entry["endpoint"], sort_keys=True)]
    return Unrecorded(shlex.join(str(flag) for flag in flags))


def get_model_gpus(wildcards):
    return int(get_model_engine(wildcards)["tensor_parallel_size"])


def get_model_mem_mb(wildcards, attempt):
    return config["models"][wildcards.model]["resources"]["mem_mb"] * attempt


def get_model_runtime(wildcards, attempt):
    return config["models"][wildcards.model]["resources"]["runtime"] * attempt


def get_model_cpus(wildcards):
    return config["models"][wildcards.model]["resources"]["cpus"]


def get_model_partition(wildcards):
    """The model's SLURM partition; the same for its server and every consumer of its
    service group (a group's string resources must agree)."""
    return gpu_partition(config["models"][wildcards.model]["resources"])


def model_slurm(key):
    """A resource function for models.<m>.resources.<key> (gpu_model, constraint, qos,
    slurm_extra); None, so no flag at all, when the model does not set it."""

    def value(wildcards):
        return model_slurm_value(config["models"][wildcards.model]["resources"], key)

    return value


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
        "revision": get_model_revision(wildcards) or None,
        "kind": model["kind"],
        "chat_template": uses_chat_template(wildcards.model),
        "chat_template_kwargs": dict(model["chat_template_kwargs"]),
        "dtype": model["engine"]["dtype"],
        # vllm: only these sampling parameters; auto: the model's generation_config.json too.
        "generation_config": model["engine"]["generation_config"],
        "issue_name": issue["name"],
        "topic_name": issue["topics"][wildcards.topic]["name"],
        "n_per_shard": generation["n_per_shard"],
        "max_tokens": generation["max_tokens"],
        "temperature": generation["temperature"],
        "top_p": generation["top_p"],
    }


def get_classifier_spec(wildcards):
    """The classifier's config with its hub models' locked commits (revision; revisions
    per label for a binary set)."""
    spec = dict(config["classifiers"][wildcards.classifier])
    default = spec.get("revision") or "main"
    if spec["type"] == "hf" and is_hub_id(spec["model"]):
        spec["revision"] = hub_revision(spec["model"], default)
    elif spec["type"] == "hf-binary-set":
        wanted = spec.get("revisions", {})
        spec["revisions"] = {
            label: hub_revision(reference, wanted.get(label, default))
            for label, reference in spec["models"].items()
            if is_hub_id(reference)
        }
    return spec


def get_classifier_gpus(wildcards):
    """Transformer classifiers ask for a GPU on the cluster; lexicons need none."""
    return 0 if config["classifiers"][wildcards.classifier]["type"] == "lexicon" else 1


def get_classifier_python(wildcards):
    """Transformer classifiers run in the model runtime (runtime.python, like the server);
    lexicons, which need no GPU, in the environment running Snakemake, whose lock holds
    the lexicon wheels."""
    if get_classifier_gpus(wildcards) > 0:
        return get_model_python(wildcards)
    return sys.executable


def get_classifier_partition(wildcards):
    """The GPU partition for transformer classifiers, the CPU partition for lexicons."""
    return classifier_partition(get_classifier_gpus(wildcards) > 0)


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
        "permutations": settings["permutations"],
        "alpha": settings["alpha"],
        "seed": config["seed"],
        "plutchik_smoothing": settings["plutchik_smoothing"],
        "plutchik_weight": settings["plutchik_weight"],
    }


def get_design_params(wildcards):
    return {
        "n_per_shard": config["generation"]["n_per_shard"],
        "groups": GROUPS,
        "confidence": config["align"]["confidence"],
        "alpha": config["align"]["alpha"],
        "bootstrap_replicates": config["align"]["bootstrap_replicates"],
        "draws": config["design"]["draws"],
        "seed": config["seed"],
        "none_bin": config["align"]["none_bin"],
    }


def get_gpu_hours_by_shard_size(wildcards):
    """GPU-hours of the whole study at each cell size the design job predicts."""
    from affalign.config.plan import study_gpu_hours
    from affalign.design.stage import SIZE_MULTIPLES

    n = config["generation"]["n_per_shard"]
    return {n * m: study_gpu_hours(config, n * m) for m in SIZE_MULTIPLES}


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


def opinion_store(wildcards):
    """Where finished opinion shards are kept by content hash. Where copies are kept does
    not change what a shard holds: passed unrecorded, so that wiring the store in reran
    no finished shard."""
    return f"results/.shard-store/opinions/{wildcards.model}"


def get_all_opinion_shards(wildcards):
    return [path for model in MODELS for path in opinion_shards(model)]


def get_all_model_shards(wildcards):
    """Every shard a model wrote: generated posts and, with opinions, scored surveys."""
    return get_all_generated(wildcards) + get_all_opinion_shards(wildcards)


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
        "revision": get_model_revision(wildcards) or None,
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
            f"results/design/{classifier}/summary.csv",
            f"results/figures/{classifier}/design.png",
        ]
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


# Rules whose jobs write their one output atomically as their last act (the shard is
# written whole or not at all), so an output that exists when the job ends is complete.
SHARDS_WRITTEN_WHOLE = ("generate", "opinion_shard")


def keep_finished_shards_of_failed_groups():
    """When one job of a service group fails, Snakemake 9 fails the whole group: the
    scheduler (scheduling/job_scheduler.py, JobScheduler._handle_error) calls
    GroupJob.postprocess(error=True), which runs Job.postprocess(error=True) for every
    member (jobs.py): that records each member's metadata as finished
    (persistence.finished) and then, unless --keep-incomplete, deletes every member's
    existing outputs (Job.cleanup), the shards of siblings that had finished included. No
    setting spares only the finished members (--keep-incomplete spares the outputs of
    every failed job of every rule, and records them as complete). Shards are written
    whole or not at all, so a shard that exists is a finished one: keep it, with the
    metadata Snakemake has just recorded for it. (A rerun still schedules it, because the
    model's service must run again for the failed shard and Snakemake reruns every
    consumer of a service that runs; the job then takes the shard from the shard store
    without a request.) Outputs of other rules are removed as before. (tests/test_shard_write_failure.py checks this on
    each Snakemake version.)"""
    from snakemake.jobs import Job
    from snakemake.logging import logger

    cleanup = getattr(Job, "cleanup", None)
    if cleanup is None or getattr(cleanup, "keeps_finished_shards", False):
        return

    async def cleanup_keeping_finished_shards(job, skip_outputs):
        if job.rule.name in SHARDS_WRITTEN_WHOLE:
            finished = [f for f in job.output if Path(f).is_file()]
            if finished:
                logger.warning(
                    f"affalign: kept the finished shard {', '.join(map(str, finished))} "
                    "of the failed group (written whole; a rerun takes it from the shard store)"
                )
            skip_outputs = set(skip_outputs) | set(job.output)
        await cleanup(job, skip_outputs)

    cleanup_keeping_finished_shards.keeps_finished_shards = True
    Job.cleanup = cleanup_keeping_finished_shards


keep_finished_shards_of_failed_groups()


def start_every_group_member_at_once():
    """Snakemake's local executor (also what runs a group inside its SLURM job) grows its
    thread pool to a group's member count and then submits the group's coordinator
    (Executor.run_group_job, which submits every member) to that same pool
    (snakemake/executors/local.py, Executor.run_job, checked on 9.27.1), so the coordinator
    holds a thread and the last consumer of every model waits for another to end: +28 %
    generation time with six shards. Grow the pool by a thread for every member and one for
    the coordinator before each group is submitted. Applied only where run_job still has that
    shape; elsewhere the run goes on unpatched with a warning."""
    import concurrent.futures
    import inspect

    from snakemake.executors import local
    from snakemake.logging import logger

    run_job = local.Executor.run_job
    if getattr(run_job, "starts_every_group_member", False):
        return
    try:
        source = inspect.getsource(run_job)
    except (OSError, TypeError):
        source = ""
    if "missing_workers = max(len(job) - self.workers, 0)" not in source:
        logger.warning(
            "affalign: this Snakemake's local executor is not the one the group-start fix "
            "was written for; consumers of a model may start one after another"
        )
        return

    def run_job_with_a_thread_per_member(self, job):
        if job.is_group():
            self.workers += len(job) + 1
            self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers)
        return run_job(self, job)

    run_job_with_a_thread_per_member.starts_every_group_member = True
    local.Executor.run_job = run_job_with_a_thread_per_member


start_every_group_member_at_once()


# --- Endpoint models (models.<m>.endpoint): OpenAI-compatible servers that already run. ---
# No serve_model job runs for them: their shard jobs (rules generate_endpoint and
# opinion_shard_endpoint) call the endpoint directly. Each such job holds its share
# (max_concurrency // shard_jobs) of the resource endpoint_<model>, whose total is the
# endpoint's max_concurrency, so Snakemake never runs more of them at once than the
# endpoint's limits allow, on any executor.
from affalign.service import EndpointSpec, ServiceUnavailable, budget_problems

ENDPOINTS = {
    model: EndpointSpec.from_config(model, config["models"][model])
    for model in MODELS
    if "endpoint" in config["models"][model]
}
# A pattern that no name matches, for a run without endpoint models.
NO_NAME = "(?!)"
ENDPOINT_MODELS = slug_alternatives(ENDPOINTS) if ENDPOINTS else NO_NAME


def register_endpoint_limits():
    """Each endpoint's resource and its total; a total given with --resources wins."""
    for spec in ENDPOINTS.values():
        if spec.resource not in workflow.global_resources:
            workflow.register_resource(spec.resource, spec.max_concurrency)


register_endpoint_limits()


def get_endpoint_resources():
    """endpoint_<model> -> the job's share for that endpoint's shard jobs (0 for others)."""

    def share(name):
        return lambda wildcards: (
            ENDPOINTS[name].job_concurrency if wildcards.model == name else 0
        )

    return {spec.resource: share(name) for name, spec in ENDPOINTS.items()}


def endpoint_detection_file(model):
    """The log-probability method detected for an endpoint before the run (auto)."""
    return f"results/endpoints/{model}.json"


def get_endpoint_generation_params(wildcards):
    """What determines an endpoint shard's content: the generation parameters, with the
    endpoint's base URL and served model name instead of a folder, revision and dtype.
    """
    params = get_generation_params(wildcards)
    params.update(
        revision=None, dtype=None, endpoint=ENDPOINTS[wildcards.model].identity()
    )
    return params


def get_endpoint_opinion_params(wildcards):
    """As get_opinion_params, with the endpoint and its log-probability method (auto:
    detected before the run; top_logprobs matters unless the method is exact)."""
    params = get_opinion_params(wildcards)
    spec = ENDPOINTS[wildcards.model]
    params.update(
        revision=None,
        dtype=None,
        endpoint=spec.identity(),
        logprobs=spec.logprobs,
        top_logprobs=(
            None
            if spec.logprobs == "exact"
            else spec.top_logprobs or OPINIONS["top_logprobs"]
        ),
    )
    return params


def endpoint_requests_planned(jobs):
    """Requests the run's endpoint jobs will send, per endpoint model (see
    affalign.config.endpoints.RequestCounter for what is counted)."""
    from affalign.config.endpoints import RequestCounter

    counter = RequestCounter(config)
    planned = dict.fromkeys(ENDPOINTS, 0)
    for job in jobs:
        if job.rule.name == "generate_endpoint":
            planned[job.wildcards_dict["model"]] += counter.generation()
        elif job.rule.name == "opinion_shard_endpoint":
            survey = job.wildcards_dict["survey"]
            planned[job.wildcards_dict["model"]] += counter.opinion(survey)
    return planned


def check_endpoint_run():
    """Before any job starts: each endpoint's planned requests within its budget, and the
    log-probability method of the endpoints (logprobs: auto) whose opinion shards run,
    detected once and written for those jobs; an endpoint without any is refused."""
    if not ENDPOINTS:
        return
    from snakemake.logging import logger
    from affalign.opinions.client import (
        Scoring,
        detect_endpoint_logprobs,
        write_logprob_support,
    )

    jobs = list(workflow.dag.needrun_jobs())
    planned = endpoint_requests_planned(jobs)
    for name, requests in planned.items():
        budget = ENDPOINTS[name].request_budget
        logger.info(
            f"affalign: endpoint model {name}: {requests} requests planned "
            f"(request budget {budget}) to {ENDPOINTS[name].label()}"
        )
    problems = budget_problems(planned, ENDPOINTS)
    if problems:
        raise WorkflowError(
            "affalign: not starting: "
            + "; ".join(problems)
            + " (check generation.n_per_shard and the surveys, or raise request_budget)"
        )
    opinion_models = {
        job.wildcards_dict["model"]
        for job in jobs
        if job.rule.name == "opinion_shard_endpoint"
    }
    for name in sorted(opinion_models):
        spec = ENDPOINTS[name]
        if spec.logprobs != "auto":
            continue
        scoring = Scoring(
            mode="auto",
            top_logprobs=spec.top_logprobs or OPINIONS["top_logprobs"],
            chat=OPINIONS["use_chat_template"] and uses_chat_template(name),
            chat_template_kwargs=dict(config["models"][name]["chat_template_kwargs"]),
        )
        try:
            support = detect_endpoint_logprobs(spec, scoring)
        except ServiceUnavailable as error:
            raise WorkflowError(f"affalign: not starting: models.{name}: {error}")
        write_logprob_support(endpoint_detection_file(name), support, spec)
        logger.info(
            f"affalign: endpoint model {name}: opinion shards use {support.method} "
            f"log-probabilities ({support.detail})"
        )


onstart:
    check_endpoint_run()


# --- LLM classifiers (classifiers.<c>.type: llm): a served model of models: as the judge. ---
# Each judge gets its own server (serve_judge, service file results/services/judge/{model}.json)
# whose consumers are the classification jobs of every LLM classifier it judges for. Not the
# generation server: Snakemake reruns every consumer of a service that runs (dag.py,
# update_needrun), so a judge sharing its generation server would regenerate that model's
# shards (and reclassify them with every classifier) whenever a prompt or label changed.
from affalign.classify.llm import METHOD as LLM_METHOD
from affalign.io import file_sha256

LLM_CLASSIFIERS = [
    name for name, spec in config["classifiers"].items() if spec["type"] == "llm"
]
JUDGES = sorted({config["classifiers"][name]["model"] for name in LLM_CLASSIFIERS})
LLM_CLASSIFIER_NAMES = (
    slug_alternatives(LLM_CLASSIFIERS) if LLM_CLASSIFIERS else NO_NAME
)
JUDGE_NAMES = slug_alternatives(JUDGES) if JUDGES else NO_NAME


def warn_about_self_classification():
    from snakemake.logging import logger

    for name in LLM_CLASSIFIERS:
        judge = config["classifiers"][name]["model"]
        if judge in MODELS:
            logger.warning(
                f"affalign: classifier {name}: {judge} classifies its own generations "
                "(allowed; recorded as judge_is_generator in its affect files)"
            )


warn_about_self_classification()


def judge_of(wildcards):
    return config["classifiers"][wildcards.classifier]["model"]


def judge_service(wildcards):
    return f"results/services/judge/{judge_of(wildcards)}.json"


def judge_server_log(wildcards):
    return f"logs/serve_judge/{judge_of(wildcards)}.server.log"


def judge_partition(wildcards):
    return gpu_partition(config["models"][judge_of(wildcards)]["resources"])


def get_llm_classifier_settings(wildcards):
    """What determines an LLM classifier's affect files: the judge (source, revision, dtype,
    chat template), labels and definitions, the prompt file's hash, method, seed."""
    spec = config["classifiers"][wildcards.classifier]
    judge = spec["model"]
    model = config["models"][judge]
    return {
        "model": judge,
        "model_source": model_source(judge),
        "revision": (
            hub_revision(model["hub_id"], model["revision"])
            if "hub_id" in model
            else None
        ),
        "dtype": model["engine"]["dtype"],
        "generation_config": model["engine"]["generation_config"],
        "chat": uses_chat_template(judge),
        "chat_template_kwargs": dict(model["chat_template_kwargs"]),
        "labels": dict(spec["labels"]),
        "prompt": spec["prompt"],
        "prompt_sha256": file_sha256(spec["prompt"]),
        "method": LLM_METHOD,
        "seed": config["seed"],
        "max_tokens": spec["max_tokens"],
    }


def get_llm_classifier_operations(wildcards):
    """How the classification jobs run (generation.* limits): never recorded."""
    generation = config["generation"]
    return Unrecorded(
        shlex.join(
            [
                "--max-in-flight",
                str(generation["max_in_flight"]),
                "--server-start-timeout",
                str(generation["server_start_timeout_s"]),
                "--request-timeout",
                str(generation["request_timeout_s"]),
            ]
        )
    )


def forget_judge_service_record(wildcards):
    """As forget_service_record (common.smk), for a judge's service file."""
    service = f"results/services/judge/{wildcards.model}.json"
    persistence = workflow.persistence
    if persistence is not None and not Path(service).exists():
        from snakemake.io import IOFile

        persistence.cleanup_metadata(IOFile(service))
    return []
