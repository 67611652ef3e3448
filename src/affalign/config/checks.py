"""Checks of a schema-valid config that need the file system, run before any job.

Each failure names the config file and the key, so the user knows what to fix.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from affalign.generate import DEFAULT_PROMPT_TYPE, PromptError, load_templates
from affalign.human import (
    DomainTableError,
    IdeologySettings,
    SourceSpec,
    check_source,
    domain_table_options,
    read_domain_table,
)
from affalign.io import TableError, table_format, table_schema
from affalign.opinions import SurveyError, read_survey


class ConfigError(ValueError):
    """A config that cannot be run."""


def check_config(config: Mapping[str, Any], source: str, workdir: str | Path = ".") -> None:
    """Raise :class:`ConfigError` for the first problem found."""
    workdir = Path(workdir)

    def here(path: str) -> Path:
        return Path(path) if Path(path).is_absolute() else workdir / path

    groups = list(config["groups"])
    for prompt_type in config["prompt_types"]:
        if prompt_type != DEFAULT_PROMPT_TYPE and prompt_type not in groups:
            raise ConfigError(
                f"{source}: prompt_types entry {prompt_type!r} steers towards a group that is not in "
                f"groups {groups}"
            )

    for name, model in config["models"].items():
        if "path" in model and not here(model["path"]).exists():
            raise ConfigError(
                f"{source}: models.{name}.path {model['path']!r} does not exist (looked in "
                f"{here(model['path']).resolve()}); prepare it (make prepare-model) or fix the path"
            )

    for name, classifier in config["classifiers"].items():
        references = {"model": classifier["model"]} if "model" in classifier else {}
        references.update({f"models.{label}": ref for label, ref in classifier.get("models", {}).items()})
        for key, reference in references.items():
            # Hub ids look like relative paths; only explicit paths are checked here.
            explicit = reference.startswith(("/", "./", "../", "resources/"))
            if explicit and not here(reference).exists():
                raise ConfigError(f"{source}: classifiers.{name}.{key} {reference!r} does not exist")

    issues, human = set(config["issues"]), set(config["human"])
    if issues - human:
        raise ConfigError(f"{source}: human has no table for issue(s) {sorted(issues - human)}")
    if human - issues:
        raise ConfigError(f"{source}: human.{sorted(human - issues)[0]} is not an issue in 'issues'")

    for issue, table in config["human"].items():
        path = here(table["path"])
        if not path.is_file():
            raise ConfigError(f"{source}: human.{issue}.path {table['path']!r} does not exist")
        try:
            spec = SourceSpec.from_config(table)
            # JSON lines: only a sample is read here; nested fields are checked by the job.
            nested = table_format(path) != "ndjson"
            check_source(path, table_schema(path), spec, issue, nested=nested)
        except TableError as error:
            raise ConfigError(f"{source}: human.{issue}: {error}") from error

    check_ideology(config, source, here)
    check_opinions(config, source, here)

    prompts = here(config["prompts"])
    if not prompts.is_file():
        raise ConfigError(f"{source}: prompts {config['prompts']!r} does not exist")
    try:
        load_templates(prompts)
    except PromptError as error:
        raise ConfigError(f"{source}: prompts: {error}") from error


def check_ideology(config: Mapping[str, Any], source: str, here: Callable[[str], Path]) -> None:
    """The ideology settings and domain table, when an issue takes its groups from domains."""
    users = [issue for issue, table in config["human"].items() if table.get("group_from") == "domains"]
    if not users:
        return
    ideology = config.get("ideology") or {}
    if not ideology.get("domain_table"):
        raise ConfigError(
            f"{source}: ideology.domain_table is required: human.{users[0]}.group_from is 'domains'"
        )
    problems = IdeologySettings.from_config(ideology).problems()
    if problems:
        raise ConfigError(f"{source}: {problems[0]}")
    options = domain_table_options(ideology)
    if options["category_column"] is not None and not options["categories"]:
        raise ConfigError(
            f"{source}: ideology.domain_columns.category is set, so ideology.categories must map "
            "each category to a score"
        )
    table = here(ideology["domain_table"])
    if not table.is_file():
        raise ConfigError(f"{source}: ideology.domain_table {ideology['domain_table']!r} does not exist")
    try:
        read_domain_table(table, **options)
    except DomainTableError as error:
        raise ConfigError(f"{source}: ideology.domain_table: {error}") from error


def print_config_warning(warning: str) -> None:
    """A warning from the pre-run checks, on the console (the run goes on)."""
    print(f"affalign: WARNING: {warning}", file=sys.stderr, flush=True)


def check_opinions(
    config: Mapping[str, Any],
    source: str,
    here: Callable[[str], Path],
    warn: Callable[[str], None] = print_config_warning,
) -> None:
    """The opinions section, when present: steering answers, the compared groups and every
    survey's files (read in full, so their warnings are shown before any job)."""
    opinions = config.get("opinions")
    if not opinions:
        return
    for group, steering in opinions["groups"].items():
        qa = steering["qa"]
        if qa["answer"] not in qa["options"]:
            raise ConfigError(
                f"{source}: opinions.groups.{group}.qa.answer {qa['answer']!r} is not one of its options "
                f"{qa['options']}"
            )
    compare_only = list(opinions.get("compare_groups") or [])
    steered_too = [group for group in compare_only if group in opinions["groups"]]
    if steered_too:
        raise ConfigError(
            f"{source}: opinions.compare_groups lists {steered_too[0]!r}, which opinions.groups already "
            "steers towards (and compares with); list each group in one of them"
        )
    for name, survey in opinions["surveys"].items():
        for key in ("questions", "answers"):
            if not here(survey[key]).is_file():
                raise ConfigError(f"{source}: opinions.surveys.{name}.{key} {survey[key]!r} does not exist")
        columns = survey.get("columns") or {}
        try:
            read_survey(
                here(survey["questions"]),
                here(survey["answers"]),
                form=survey.get("form", "distribution"),
                groups=[*opinions["groups"], *compare_only],
                survey=name,
                group_column=columns.get("group", "group"),
                weight_column=columns.get("weight", "weight"),
                warn=lambda warning, name=name: warn(f"{source}: opinions.surveys.{name}: {warning}"),
            )
        except SurveyError as error:
            raise ConfigError(f"{source}: opinions.surveys.{name}: {error}") from error
