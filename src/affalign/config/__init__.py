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

``python -m affalign.config FILE...`` reads config files strictly, for a syntax error in a
``--configfile``, which Snakemake reports before the workflow can (without its line).
"""

from affalign.config.checks import ConfigError, check_config
from affalign.config.files import check_config_files, read_config_file, schema_error_summary

__all__ = ["ConfigError", "check_config", "check_config_files", "read_config_file", "schema_error_summary"]
