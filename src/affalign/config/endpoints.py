"""Requests to endpoint models (``models.<m>.endpoint``) against their budgets.

One way of counting serves both places that count: the run's pre-flight (:func:`preflight`,
the ``onstart`` handler of ``workflow/rules/common.smk``, over the jobs Snakemake is about to
run, which refuses to start a run over a budget and detects the endpoints' log-probability
method) and ``affalign plan`` (over the shard files not yet made).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affalign.classify import Judge, check_endpoint_judge, llm_classifier_settings, requests_per_post
from affalign.config.checks import endpoint_models, selected_models
from affalign.config.models import ModelIdentity, uses_chat_template
from affalign.config.plan import gold_posts, shard_paths
from affalign.io import read_table
from affalign.opinions import (
    Scoring,
    context_slug,
    detect_endpoint_logprobs,
    read_questions,
    write_logprob_support,
)
from affalign.service import EndpointSpec, ServiceUnavailable, budget_problems


class RequestCounter:
    """Requests one endpoint shard sends: ``n_per_shard`` per generation shard, one per
    question per opinion shard; an endpoint judge's classification job, per post it
    classifies :func:`~affalign.classify.requests_per_post` of its classifier. Retries and
    each job's few metadata requests (the model list, the letters' tokens, a
    log-probability probe) are not counted."""

    def __init__(self, config: Mapping[str, Any], workdir: str | Path = ".") -> None:
        self.config = config
        self.workdir = Path(workdir)
        self._questions: dict[str, int] = {}
        self._human: dict[str, int] = {}

    def generation(self) -> int:
        return int(self.config["generation"]["n_per_shard"])

    def opinion(self, survey: str) -> int:
        if survey not in self._questions:
            path = Path(self.config["opinions"]["surveys"][survey]["questions"])
            self._questions[survey] = len(read_questions(path if path.is_absolute() else self.workdir / path))
        return self._questions[survey]

    def judge(self, classifier: str) -> str:
        """The model an LLM classifier's requests go to."""
        return self.config["classifiers"][classifier]["model"]

    def classification_generated(self, classifier: str, model: str) -> int:
        """One job of ``classify_generated_llm_endpoint``: every post of the model's shards
        (``n_per_shard`` each, an upper bound)."""
        posts = len(shard_paths(self.config, model)) * self.generation()
        return posts * requests_per_post(self.config["classifiers"][classifier])

    def classification_human(self, classifier: str, issue: str) -> int:
        """One job of ``classify_human_llm_endpoint``: the issue's posts."""
        return self.human_posts(issue) * requests_per_post(self.config["classifiers"][classifier])

    def classification_gold(self, classifier: str) -> int:
        """One job of ``classify_gold_llm_endpoint``: the rows of the classifier's gold file."""
        spec = self.config["classifiers"][classifier]
        return gold_posts(spec, self.workdir) * requests_per_post(spec)

    def human_posts(self, issue: str) -> int:
        """The issue's ingested posts (``results/human/<issue>/posts.parquet``) when they are
        there; before ingestion, the rows of its input table (an upper bound: ingestion only
        drops posts)."""
        if issue not in self._human:
            ingested = self.workdir / "results" / "human" / issue / "posts.parquet"
            if ingested.is_file():
                self._human[issue] = read_table(ingested).height
            else:
                path = Path(self.config["human"][issue]["path"])
                self._human[issue] = read_table(path if path.is_absolute() else self.workdir / path).height
        return self._human[issue]


def opinion_shard_paths(config: Mapping[str, Any], model: str) -> list[tuple[str, Path]]:
    """(survey, path) of every opinion shard of ``model``; none without an opinions section."""
    opinions = config.get("opinions")
    if not opinions:
        return []
    contexts = [
        context_slug(method, group)
        for method in opinions["contexts"]
        for group in ([None] if method == "default" else opinions["groups"])
    ]
    return [
        (survey, Path("results/opinions", model, survey, f"{context}.parquet"))
        for survey in opinions["surveys"]
        for context in contexts
    ]


@dataclass(frozen=True)
class EndpointPlan:
    model: str
    endpoint: str
    shards_to_run: int
    opinion_shards_to_run: int
    requests: int
    budget: int
    # Classification jobs of the LLM classifiers it judges for whose outputs are not made yet.
    classify_jobs_to_run: int = 0

    @property
    def over_budget(self) -> bool:
        return self.requests > self.budget


def plan_endpoints(config: Mapping[str, Any], workdir: Path = Path(".")) -> list[EndpointPlan]:
    """Per endpoint model of the run (judges included), the requests its missing shards and
    affect files would send."""
    counter = RequestCounter(config, workdir)
    selected = selected_models(config)
    plans = []
    for model in endpoint_models(config):
        spec = EndpointSpec.from_config(model, config["models"][model])
        generates = model in selected
        missing = [p for p in shard_paths(config, model) if generates and not (workdir / p).is_file()]
        opinions = [
            (s, p) for s, p in opinion_shard_paths(config, model) if generates and not (workdir / p).is_file()
        ]
        requests = len(missing) * counter.generation() + sum(
            counter.opinion(survey) for survey, _ in opinions
        )
        affect = [job for job in classification_jobs(config, model) if not (workdir / job[2]).is_file()]
        requests += sum(
            counter.classification_generated(classifier, wildcards["model"])
            if "model" in wildcards
            else counter.classification_human(classifier, wildcards["issue"])
            if "issue" in wildcards
            else counter.classification_gold(classifier)
            for classifier, wildcards, _ in affect
        )
        plans.append(
            EndpointPlan(
                model, spec.label(), len(missing), len(opinions), requests, spec.request_budget, len(affect)
            )
        )
    return plans


def classification_jobs(config: Mapping[str, Any], judge: str) -> list[tuple[str, dict[str, str], Path]]:
    """(classifier, wildcards, one output) of every classification job ``judge`` does: per
    LLM classifier it judges for, one per model of the run, one per issue and one for its
    gold file (no wildcard but the classifier)."""
    jobs = []
    for classifier, spec in config["classifiers"].items():
        if spec["type"] != "llm" or spec["model"] != judge:
            continue
        root = Path("results/classify", classifier)
        for model in selected_models(config):
            first = shard_paths(config, model)[0].relative_to(Path("results/generated", model))
            jobs.append((classifier, {"model": model}, root / "generated" / model / first))
        for issue in config["issues"]:
            jobs.append((classifier, {"issue": issue}, root / "human" / f"{issue}.parquet"))
        if "gold" in spec:
            jobs.append((classifier, {}, root / "gold.parquet"))
    return jobs


def format_endpoint_plan(plans: list[EndpointPlan]) -> str:
    """The endpoint models' requests as a fixed-width table."""
    rows = [
        ("endpoint model", "endpoint", "shards", "opinion_shards", "classify_jobs", "requests", "budget", "")
    ]
    for plan in plans:
        warning = "OVER BUDGET: the run will not start" if plan.over_budget else ""
        rows.append((
            plan.model, plan.endpoint, str(plan.shards_to_run), str(plan.opinion_shards_to_run),
            str(plan.classify_jobs_to_run), f"{plan.requests:,}", f"{plan.budget:,}", warning,
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    note = (
        "requests: n_per_shard per generation shard and one per survey question per opinion shard not yet "
        "made; per post of each classification job not yet made of an LLM classifier it judges for, one "
        "(structured) or one per label (logprobs); retries and metadata requests not counted."
    )
    return "\n".join([*lines, "", note])


class EndpointRunRefused(RuntimeError):
    """A run whose endpoint models cannot take it: over a request budget, or an endpoint
    that does not answer or gives no log-probabilities for the opinion shards."""


def detection_file(model: str) -> str:
    """The log-probability method detected for an endpoint before the run (auto)."""
    return f"results/endpoints/{model}.json"


def requests_planned(
    config: Mapping[str, Any],
    endpoints: Mapping[str, EndpointSpec],
    jobs: Iterable[tuple[str, Mapping[str, str]]],
) -> dict[str, int]:
    """Requests the run's endpoint jobs (rule name, wildcards) will send, per endpoint model
    (see :class:`RequestCounter` for what is counted)."""
    counter = RequestCounter(config)
    planned = dict.fromkeys(endpoints, 0)
    for rule, wildcards in jobs:
        if rule == "generate_endpoint":
            planned[wildcards["model"]] += counter.generation()
        elif rule == "opinion_shard_endpoint":
            planned[wildcards["model"]] += counter.opinion(wildcards["survey"])
        elif rule == "classify_generated_llm_endpoint":
            classifier = wildcards["classifier"]
            planned[counter.judge(classifier)] += counter.classification_generated(
                classifier, wildcards["model"]
            )
        elif rule == "classify_human_llm_endpoint":
            classifier = wildcards["classifier"]
            planned[counter.judge(classifier)] += counter.classification_human(classifier, wildcards["issue"])
        elif rule == "classify_gold_llm_endpoint":
            classifier = wildcards["classifier"]
            planned[counter.judge(classifier)] += counter.classification_gold(classifier)
    return planned


def preflight_endpoints(
    config: Mapping[str, Any],
    endpoints: Mapping[str, EndpointSpec],
    jobs: Iterable[tuple[str, Mapping[str, str]]],
    log: Callable[[str], None] = print,
) -> None:
    """Before any job of the run starts (``jobs``: rule name and wildcards of each job that
    will run): each endpoint's planned requests within its budget, and the log-probability
    method of the endpoints (``logprobs: auto``) whose opinion shards run, detected once and
    written to :func:`detection_file` for those jobs. Raises :class:`EndpointRunRefused`
    over a budget or for an endpoint without a usable method."""
    if not endpoints:
        return
    jobs = list(jobs)
    planned = requests_planned(config, endpoints, jobs)
    for name, requests in planned.items():
        spec = endpoints[name]
        log(
            f"affalign: endpoint model {name}: {requests} requests planned "
            f"(request budget {spec.request_budget}) to {spec.label()}"
        )
    problems = budget_problems(planned, endpoints)
    if problems:
        raise EndpointRunRefused(
            "affalign: not starting: "
            + "; ".join(problems)
            + " (check generation.n_per_shard, the surveys and the LLM classifiers, or raise request_budget)"
        )
    check_logprobs_judges(config, endpoints, jobs, log)
    opinion_models = {wildcards["model"] for rule, wildcards in jobs if rule == "opinion_shard_endpoint"}
    for name in sorted(opinion_models):
        spec = endpoints[name]
        if spec.logprobs != "auto":
            continue
        entry = config["models"][name]
        opinions = config["opinions"]
        scoring = Scoring(
            mode="auto",
            top_logprobs=spec.top_logprobs or opinions["top_logprobs"],
            chat=opinions["use_chat_template"] and uses_chat_template(entry),
            chat_template_kwargs=dict(entry["chat_template_kwargs"]),
        )
        try:
            support = detect_endpoint_logprobs(spec, scoring)
        except ServiceUnavailable as error:
            raise EndpointRunRefused(f"affalign: not starting: models.{name}: {error}") from error
        write_logprob_support(detection_file(name), support, spec)
        log(
            f"affalign: endpoint model {name}: opinion shards use {support.method} "
            f"log-probabilities ({support.detail})"
        )


JUDGE_ENDPOINT_RULES = (
    "classify_generated_llm_endpoint",
    "classify_human_llm_endpoint",
    "classify_gold_llm_endpoint",
)


def check_logprobs_judges(
    config: Mapping[str, Any],
    endpoints: Mapping[str, EndpointSpec],
    jobs: list[tuple[str, Mapping[str, str]]],
    log: Callable[[str], None],
) -> None:
    """Each endpoint judge of method logprobs whose jobs run answers a test question the way
    its jobs will ask (:func:`~affalign.classify.check_endpoint_judge`); raises
    :class:`EndpointRunRefused` otherwise, before any job starts."""
    classifiers = sorted(
        {
            wildcards["classifier"]
            for rule, wildcards in jobs
            if rule in JUDGE_ENDPOINT_RULES
            and config["classifiers"][wildcards["classifier"]].get("method") == "logprobs"
        }
    )
    for classifier in classifiers:
        judge = config["classifiers"][classifier]["model"]
        identity = ModelIdentity.from_config(config, judge, {})
        settings = llm_classifier_settings(config, classifier, identity)
        try:
            check_endpoint_judge(endpoints[judge], Judge.from_settings(classifier, settings))
        except ServiceUnavailable as error:
            raise EndpointRunRefused(
                f"affalign: not starting: classifiers.{classifier}: the endpoint judge {judge} "
                f"({endpoints[judge].label()}): {error}. Use method structured with this endpoint, "
                "or a judge served by vLLM"
            ) from None
        log(
            f"affalign: classifier {classifier}: endpoint judge {judge} answers yes/no with log-probabilities"
        )


def endpoint_specs(config: Mapping[str, Any], models: Iterable[str]) -> dict[str, EndpointSpec]:
    """The endpoint models among ``models``, by name."""
    return {
        model: EndpointSpec.from_config(model, config["models"][model])
        for model in models
        if "endpoint" in config["models"][model]
    }


def endpoint_resources(endpoints: Mapping[str, EndpointSpec]) -> dict[str, Callable[[Any], int]]:
    """Resource functions of an endpoint shard job (wildcard ``model``): ``endpoint_<model>``
    -> the job's share of that endpoint's limit for its own endpoint, 0 for the others.
    The resource's total, the endpoint's ``max_concurrency``, is registered by the workflow,
    so Snakemake never runs more of its jobs at once than the endpoint allows."""

    def share(name: str) -> Callable[[Any], int]:
        return lambda wildcards: endpoints[name].job_concurrency if wildcards.model == name else 0

    return {spec.resource: share(name) for name, spec in endpoints.items()}


def judge_endpoint_resources(
    config: Mapping[str, Any], endpoints: Mapping[str, EndpointSpec]
) -> dict[str, Callable[[Any], int]]:
    """Resource functions of an endpoint judge's classification job (wildcard
    ``classifier``): ``endpoint_<judge>`` -> the job's share of its judge's limit, 0 for the
    other endpoints (as :func:`endpoint_resources`, keyed by the classifier's judge instead
    of the job's model, which is the generator whose posts it classifies)."""

    def share(name: str) -> Callable[[Any], int]:
        def units(wildcards: Any) -> int:
            judge = config["classifiers"][wildcards.classifier]["model"]
            return endpoints[name].job_concurrency if judge == name else 0

        return units

    return {spec.resource: share(name) for name, spec in endpoints.items()}


def register_endpoint_limits(workflow: Any, endpoints: Mapping[str, EndpointSpec]) -> None:
    """Register each endpoint's resource with its total, ``max_concurrency``, on the
    Snakemake ``workflow``; a total given with ``--resources`` wins."""
    for spec in endpoints.values():
        if spec.resource not in workflow.global_resources:
            workflow.register_resource(spec.resource, spec.max_concurrency)
