"""The bill before a run: per model, shards, requests, an upper bound of output tokens, the
shards already done, and GPU-hours from a throughput table (``affalign plan``).

Pure arithmetic on a schema-validated config plus which shard files exist; nothing is
started. The throughput table (``plan.throughput_tokens_per_s``, output tokens per second
of one model job by model size in billions of parameters) is a rough default for one
modern data-centre GPU per job: override it with what ``results/`` and the job accounts of
your own cluster show.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affalign.config.checks import selected_models

SIZE_IN_NAME = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)[bB](?![A-Za-z0-9])")


@dataclass(frozen=True)
class ModelPlan:
    model: str
    size_b: float | None
    gpus: int
    shards: int
    shards_done: int
    requests: int
    max_output_tokens: int
    tokens_per_s: float | None
    gpu_hours: float | None  # the shards still to do, including one model load

    @property
    def shards_to_run(self) -> int:
        return self.shards - self.shards_done


def model_size_b(name: str, spec: Mapping[str, Any], sizes: Mapping[str, float]) -> float | None:
    """Billions of parameters: ``plan.model_sizes_b.<model>``, else read from the hub id,
    folder or model name ("Llama-3.1-8B-Instruct" -> 8, "Qwen2.5-0.5B" -> 0.5), else None."""
    if name in sizes:
        return float(sizes[name])
    for text in (spec.get("hub_id"), Path(spec["path"]).name if spec.get("path") else None, name):
        match = SIZE_IN_NAME.search(text or "")
        if match:
            return float(match.group(1))
    return None


def throughput_for(size_b: float, table: Mapping[str, float]) -> float:
    """Output tokens per second for a model of ``size_b`` billion parameters: the entry of the
    smallest listed size at least as large (conservative); beyond the largest, its rate
    scaled down in proportion to size."""
    sizes = sorted((float(size), float(rate)) for size, rate in table.items())
    for size, rate in sizes:
        if size >= size_b:
            return rate
    largest, rate = sizes[-1]
    return rate * largest / size_b


def shard_paths(config: Mapping[str, Any], model: str) -> list[Path]:
    return [
        Path("results/generated", model, issue, topic, f"{prompt_type}.parquet")
        for issue, spec in config["issues"].items()
        for topic in spec["topics"]
        for prompt_type in config["prompt_types"]
    ]


def plan_study(config: Mapping[str, Any], workdir: Path = Path(".")) -> list[ModelPlan]:
    """One :class:`ModelPlan` per model of the run (``only_models`` narrows them as it narrows
    the jobs) served by vLLM (endpoint models use no GPU here)."""
    settings = config["plan"]
    generation = config["generation"]
    plans = []
    for model, spec in selected_models(config).items():
        if "endpoint" in spec:
            continue
        paths = shard_paths(config, model)
        done = sum((workdir / path).is_file() for path in paths)
        requests = len(paths) * generation["n_per_shard"]
        max_tokens = requests * generation["max_tokens"]
        size = model_size_b(model, spec, settings["model_sizes_b"])
        gpus = int(spec.get("engine", {}).get("tensor_parallel_size", 1))
        rate = throughput_for(size, settings["throughput_tokens_per_s"]) if size is not None else None
        hours = None
        if rate is not None:
            to_run = (len(paths) - done) * generation["n_per_shard"] * generation["max_tokens"]
            seconds = to_run / rate + (settings["load_minutes"] * 60 if to_run else 0)
            hours = gpus * seconds / 3600
        plans.append(ModelPlan(model, size, gpus, len(paths), done, requests, max_tokens, rate, hours))
    return plans


def format_plan(plans: list[ModelPlan]) -> str:
    """The plan as a fixed-width table with totals."""
    header = (
        "model",
        "size_b",
        "gpus",
        "shards",
        "done",
        "to_run",
        "requests",
        "max_out_tokens",
        "tok/s",
        "gpu_h",
    )
    rows = [header]

    def number(value: float | None, digits: int = 1) -> str:
        return "?" if value is None else f"{value:,.{digits}f}"

    for plan in plans:
        rows.append((
            plan.model, number(plan.size_b), str(plan.gpus), str(plan.shards), str(plan.shards_done),
            str(plan.shards_to_run), f"{plan.requests:,}", f"{plan.max_output_tokens:,}",
            number(plan.tokens_per_s, 0), number(plan.gpu_hours, 2),
        ))  # fmt: skip
    known = [plan.gpu_hours for plan in plans if plan.gpu_hours is not None]
    unknown = len(plans) - len(known)
    total_hours = f"{math.fsum(known):,.2f}" + (f" (+{unknown} unknown)" if unknown else "")
    rows.append((
        "total", "", "", str(sum(p.shards for p in plans)), str(sum(p.shards_done for p in plans)),
        str(sum(p.shards_to_run for p in plans)), f"{sum(p.requests for p in plans):,}",
        f"{sum(p.max_output_tokens for p in plans):,}", "", total_hours,
    ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in
                       enumerate(zip(row, widths, strict=True))) for row in rows]  # fmt: skip
    notes = [
        "max_out_tokens: every request generating max_tokens (an upper bound); gpu_h: the shards still",
        "to run at the table's tokens/s plus one model load (plan.load_minutes), times the model's GPUs.",
    ]
    if unknown:
        notes.append("?: model size unknown: set plan.model_sizes_b.<model> (billions of parameters).")
    return "\n".join([*lines, "", *notes])
