"""Requests to endpoint models (``models.<m>.endpoint``) against their budgets.

One way of counting serves both places that count: the run's pre-flight (``onstart`` in
``workflow/rules/common.smk``, over the jobs Snakemake is about to run, which refuses to
start a run over a budget) and ``affalign plan`` (over the shard files not yet made).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affalign.config.checks import selected_models
from affalign.config.plan import shard_paths
from affalign.opinions import context_slug, read_questions
from affalign.service import EndpointSpec


class RequestCounter:
    """Requests one endpoint shard sends: ``n_per_shard`` per generation shard, one per
    question per opinion shard. Retries and each job's few metadata requests (the model
    list, the letters' tokens, a log-probability probe) are not counted."""

    def __init__(self, config: Mapping[str, Any], workdir: str | Path = ".") -> None:
        self.config = config
        self.workdir = Path(workdir)
        self._questions: dict[str, int] = {}

    def generation(self) -> int:
        return int(self.config["generation"]["n_per_shard"])

    def opinion(self, survey: str) -> int:
        if survey not in self._questions:
            path = Path(self.config["opinions"]["surveys"][survey]["questions"])
            self._questions[survey] = len(read_questions(path if path.is_absolute() else self.workdir / path))
        return self._questions[survey]


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

    @property
    def over_budget(self) -> bool:
        return self.requests > self.budget


def plan_endpoints(config: Mapping[str, Any], workdir: Path = Path(".")) -> list[EndpointPlan]:
    """Per endpoint model of the run, the requests its missing shards would send."""
    counter = RequestCounter(config, workdir)
    plans = []
    for model, entry in selected_models(config).items():
        if "endpoint" not in entry:
            continue
        spec = EndpointSpec.from_config(model, entry)
        missing = [path for path in shard_paths(config, model) if not (workdir / path).is_file()]
        opinions = [(s, p) for s, p in opinion_shard_paths(config, model) if not (workdir / p).is_file()]
        requests = len(missing) * counter.generation() + sum(
            counter.opinion(survey) for survey, _ in opinions
        )
        plans.append(
            EndpointPlan(model, spec.label(), len(missing), len(opinions), requests, spec.request_budget)
        )
    return plans


def format_endpoint_plan(plans: list[EndpointPlan]) -> str:
    """The endpoint models' requests as a fixed-width table."""
    rows = [("endpoint model", "endpoint", "shards", "opinion_shards", "requests", "budget", "")]
    for plan in plans:
        warning = "OVER BUDGET: the run will not start" if plan.over_budget else ""
        rows.append((
            plan.model, plan.endpoint, str(plan.shards_to_run), str(plan.opinion_shards_to_run),
            f"{plan.requests:,}", f"{plan.budget:,}", warning,
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
        "made (retries and metadata requests not counted)."
    )
    return "\n".join([*lines, "", note])
