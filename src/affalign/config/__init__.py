"""Checks of a study's config beyond its schema, run by ``workflow/rules/common.smk``
before any job starts: the config files read strictly (no key given twice, syntax errors
with their line), schema errors in one line, paths exist, model folders hold a model,
tables have rows and the columns the config names, prompt templates parse, survey tables
are well formed. Reads the config and the files it names; writes nothing.

Around Snakemake, the ``affalign`` command (:mod:`~affalign.config.cli`) checks what a study
needs before it is submitted: hub weights locked to commits and present in ``HF_HOME``
(:mod:`~affalign.config.weights`) and its bill in shards, tokens and GPU-hours
(:mod:`~affalign.config.plan`). :mod:`~affalign.config.runtime` names the interpreter of
model-side jobs (``runtime.python``) and :mod:`~affalign.config.cluster` the SLURM resources
that follow from the config.

What ``workflow/rules/common.smk`` needs beyond the checks lives here too, so that the rule
files hold only config, constants and input functions: the weights gate
(:func:`~affalign.config.weights.locked_weights`), the models as jobs see them
(:mod:`~affalign.config.models`), what reruns (:mod:`~affalign.config.params`), the
endpoints' pre-flight (:func:`~affalign.config.endpoints.preflight_endpoints`) and every
change to Snakemake's own behaviour (:mod:`~affalign.config.snakemake_patches`).

``python -m affalign.config FILE...`` reads config files strictly, for a syntax error in a
``--configfile``, which Snakemake reports before the workflow can (without its line).
"""

from affalign.config.checks import (
    ConfigError,
    LLMClassifiers,
    check_config,
    check_runtime,
    endpoint_judges,
    endpoint_models,
    names_pattern,
    selected_models,
)
from affalign.config.cluster import (
    classifier_partition,
    gpu_partition,
    model_partition,
    model_slurm_value,
    server_resources,
)
from affalign.config.endpoints import (
    EndpointRunRefused,
    detection_file,
    endpoint_resources,
    endpoint_specs,
    judge_endpoint_resources,
    preflight_endpoints,
    register_endpoint_limits,
)
from affalign.config.files import check_config_files, read_config_file, schema_error_summary, validate_config
from affalign.config.human import (
    human_inputs,
    human_source,
    ideology_settings,
    issue_keywords,
    topic_assignment,
)
from affalign.config.models import ModelIdentity, model_source, self_classification_warnings
from affalign.config.params import JsonParams, Unrecorded, consumer_operations, json_params, unrecorded
from affalign.config.plan import gpu_hours_by_shard_size
from affalign.config.runtime import runtime_device, runtime_problems, runtime_python
from affalign.config.snakemake_patches import (
    SnakemakeVersionError,
    apply_snakemake_patches,
    check_snakemake_version,
)
from affalign.config.weights import WeightsError, hub_commits, hub_revision, is_hub_id, locked_weights

# The errors of the steps before any job runs: each stops the workflow with its message.
STOPS_THE_RUN = (ConfigError, EndpointRunRefused, SnakemakeVersionError, WeightsError)

__all__ = [
    "STOPS_THE_RUN",
    "ConfigError",
    "EndpointRunRefused",
    "JsonParams",
    "LLMClassifiers",
    "ModelIdentity",
    "SnakemakeVersionError",
    "Unrecorded",
    "WeightsError",
    "apply_snakemake_patches",
    "check_config",
    "check_config_files",
    "check_runtime",
    "check_snakemake_version",
    "classifier_partition",
    "consumer_operations",
    "detection_file",
    "endpoint_judges",
    "endpoint_models",
    "endpoint_resources",
    "endpoint_specs",
    "gpu_hours_by_shard_size",
    "gpu_partition",
    "hub_commits",
    "hub_revision",
    "human_inputs",
    "human_source",
    "ideology_settings",
    "is_hub_id",
    "issue_keywords",
    "json_params",
    "judge_endpoint_resources",
    "locked_weights",
    "model_partition",
    "model_slurm_value",
    "model_source",
    "names_pattern",
    "preflight_endpoints",
    "read_config_file",
    "register_endpoint_limits",
    "runtime_device",
    "runtime_problems",
    "runtime_python",
    "schema_error_summary",
    "selected_models",
    "self_classification_warnings",
    "server_resources",
    "topic_assignment",
    "unrecorded",
    "validate_config",
]
