"""The bill before a run: per model, shards, requests, an upper bound of output tokens, the
shards already done, and GPU-hours from a throughput table (``affalign plan``).

Pure arithmetic on a schema-validated config plus which shard files exist; nothing is
started. Next to each estimate it prints the allocation the jobs will request (a model's
``resources.runtime`` × its GPUs; a GPU classifier's jobs × the runtime the SLURM profile
gives them), flagged where the request is below the estimate (the job would hit its wall
time) or more than :data:`OVER_ASK` times it (an allocation paid for and not used). The
throughput table (``plan.throughput_tokens_per_s``, output tokens per second
of one model job by model size in billions of parameters) is a rough default for one
modern data-centre GPU per job: override it with what ``results/`` and the job accounts of
your own cluster show.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affalign.config.checks import selected_models
from affalign.design import SIZE_MULTIPLES

# A request more than this many times the estimate is flagged as over-asking.
OVER_ASK = 3.0
# The rules that classify, and the profile the bill reads their SLURM runtime from.
CLASSIFY_RULES = ("classify_generated", "classify_human", "classify_gold")
SLURM_PROFILE = Path(__file__).resolve().parents[3] / "profiles" / "slurm" / "config.yaml"
SIZE_IN_NAME = re.compile(r"(?<![0-9.])(\d+(?:\.\d+)?)([bBmM])(?![A-Za-z0-9])")


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
    requested_gpu_hours: float = 0.0  # what the model's job asks for: GPUs × resources.runtime

    @property
    def shards_to_run(self) -> int:
        return self.shards - self.shards_done


def model_size_b(name: str, spec: Mapping[str, Any], sizes: Mapping[str, float]) -> float | None:
    """Billions of parameters: ``plan.model_sizes_b.<model>``, else read from the hub id,
    folder or model name ("Llama-3.1-8B-Instruct" -> 8, "Qwen2.5-0.5B" -> 0.5,
    "SmolLM2-135M-Instruct" -> 0.135), else None."""
    if name in sizes:
        return float(sizes[name])
    for text in (spec.get("hub_id"), Path(spec["path"]).name if spec.get("path") else None, name):
        match = SIZE_IN_NAME.search(text or "")
        if match:
            return float(match.group(1)) / (1000.0 if match.group(2) in "mM" else 1.0)
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


def gold_posts(spec: Mapping[str, Any], workdir: Path = Path(".")) -> int:
    """The posts of a classifier's gold file (``classifiers.<c>.gold``; 0 without one), which
    its classify_gold job labels."""
    if "gold" not in spec:
        return 0
    from affalign.io import read_table

    path = Path(spec["gold"])
    return read_table(path if path.is_absolute() else workdir / path).height


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
        requested = gpus * spec.get("resources", {}).get("runtime", 0) / 60 if done < len(paths) else 0.0
        plans.append(
            ModelPlan(model, size, gpus, len(paths), done, requests, max_tokens, rate, hours, requested)
        )
    return plans


def allocation_flag(estimate: float | None, requested: float) -> str:
    """``short`` where the request is below the estimate, ``over 3x`` where it is more than
    :data:`OVER_ASK` times it, else empty."""
    if estimate is None or requested == 0:
        return ""
    if requested < estimate:
        return "short"
    return f"over {OVER_ASK:g}x" if requested > OVER_ASK * estimate else ""


@dataclass(frozen=True)
class ClassifierPlan:
    """The GPU jobs of one transformer classifier over the whole study (lexicons need none)."""

    classifier: str
    jobs: int
    posts: int
    gpu_hours: float
    requested_gpu_hours: float
    # An LLM judge's requests (structured: one per post; logprobs: one per post and label)
    # and answer tokens at most; None for a transformer classifier.
    requests: int | None = None
    max_output_tokens: int | None = None


_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def profile_minutes(value: Any, attempt: int = 1) -> float:
    """A profile's resource value (``240`` or ``"60 * attempt"``) in minutes at ``attempt``."""
    if isinstance(value, int | float):
        return float(value)

    def evaluate(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id == "attempt":
            return float(attempt)
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](evaluate(node.left), evaluate(node.right))
        raise ValueError(f"profile resource {value!r}: only numbers, attempt and + - * / are understood")

    return evaluate(ast.parse(str(value), mode="eval").body)


def classify_runtime_minutes(rule: str, profile: Path = SLURM_PROFILE) -> float:
    """The runtime (minutes, first attempt) the SLURM profile gives ``rule``'s jobs."""
    import yaml

    settings = yaml.safe_load(profile.read_text()) or {}
    own = (settings.get("set-resources") or {}).get(rule, {})
    return profile_minutes(own.get("runtime", (settings.get("default-resources") or {}).get("runtime", 0)))


def plan_classification(
    config: Mapping[str, Any], workdir: Path = Path("."), profile: Path = SLURM_PROFILE
) -> list[ClassifierPlan]:
    """Per transformer classifier: its GPU jobs (one per model of the run, one per issue's
    human posts, one for its gold file), the posts they classify (generated: shards ×
    n_per_shard; human: the ingested posts where ``results/human`` holds them; gold: the gold
    file's rows) and GPU-hours at
    ``plan.classifier_posts_per_s`` plus ``plan.classifier_load_minutes`` per job, next to
    what the profile requests."""
    import polars as pl

    settings = config["plan"]
    models = selected_models(config)
    model_posts = (
        sum(len(shard_paths(config, model)) for model in models) * config["generation"]["n_per_shard"]
    )
    human_posts = 0
    for issue in config["issues"]:
        ingested = workdir / "results" / "human" / issue / "posts.parquet"
        if ingested.is_file():
            human_posts += pl.scan_parquet(ingested).select(pl.len()).collect().item()
    minutes = {rule: classify_runtime_minutes(rule, profile) for rule in CLASSIFY_RULES}
    plans = []
    for classifier, spec in config["classifiers"].items():
        if spec["type"] == "lexicon":
            continue
        if spec["type"] == "llm" and "endpoint" in config["models"][spec["model"]]:
            # No GPU job here: its requests are in the endpoint table (plan_endpoints).
            continue
        gold = gold_posts(spec, workdir)
        if spec["type"] == "llm":
            plans.append(_judge_plan(config, classifier, spec, model_posts + human_posts + gold))
            continue
        # One forward pass per post and per model of a binary set (Mformer: five).
        passes = len(spec.get("models", {})) or 1
        gold_jobs = 1 if "gold" in spec else 0
        jobs = len(models) + len(config["issues"]) + gold_jobs
        posts = model_posts + human_posts + gold
        seconds = (
            posts * passes / settings["classifier_posts_per_s"]
            + jobs * settings["classifier_load_minutes"] * 60
        )
        requested = (
            len(models) * minutes["classify_generated"]
            + len(config["issues"]) * minutes["classify_human"]
            + gold_jobs * minutes["classify_gold"]
        ) / 60
        plans.append(ClassifierPlan(classifier, jobs, posts, seconds / 3600, requested))
    return plans


def _judge_plan(
    config: Mapping[str, Any], classifier: str, spec: Mapping[str, Any], posts: int
) -> ClassifierPlan:
    """An LLM classifier's one server job (``serve_judge``): its requests (method
    ``structured``: one per post, at most ``max_tokens`` answer tokens each; ``logprobs``: one
    per post and label, one token each) at the judge's throughput, plus one model load;
    requested as the judge model's own job (its GPUs × ``resources.runtime``). Like the
    generation estimate it counts answer tokens only: the prompts' prefill, which dominates
    a logprobs judge's one-token answers, is not in it."""
    from affalign.classify import requests_per_post

    settings = config["plan"]
    judge = config["models"][spec["model"]]
    gpus = int(judge.get("engine", {}).get("tensor_parallel_size", 1))
    size = model_size_b(spec["model"], judge, settings["model_sizes_b"])
    rate = throughput_for(size, settings["throughput_tokens_per_s"]) if size is not None else None
    requests = posts * requests_per_post(spec)
    tokens = requests * (1 if spec.get("method") == "logprobs" else spec["max_tokens"])
    seconds = tokens / rate + settings["load_minutes"] * 60 if rate else float("nan")
    requested = gpus * judge.get("resources", {}).get("runtime", 0) / 60
    return ClassifierPlan(classifier, 1, posts, gpus * seconds / 3600, requested, requests, tokens)


def format_plan(plans: list[ModelPlan], classifiers: list[ClassifierPlan] | None = None) -> str:
    """The plan as a fixed-width table with totals: models, then GPU classifiers."""
    classifiers = classifiers or []
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
        "asked_gpu_h",
        "",
    )
    rows = [header]

    def number(value: float | None, digits: int = 1) -> str:
        return "?" if value is None else f"{value:,.{digits}f}"

    def size(value: float | None) -> str:
        return "?" if value is None else f"{value:g}"

    for plan in plans:
        rows.append((
            plan.model, size(plan.size_b), str(plan.gpus), str(plan.shards), str(plan.shards_done),
            str(plan.shards_to_run), f"{plan.requests:,}", f"{plan.max_output_tokens:,}",
            number(plan.tokens_per_s, 0), number(plan.gpu_hours, 2), number(plan.requested_gpu_hours, 2),
            allocation_flag(plan.gpu_hours, plan.requested_gpu_hours),
        ))  # fmt: skip
    for job in classifiers:
        # A judge's requests (logprobs: posts x labels); a transformer's posts.
        asked = f"{job.posts:,} posts" if job.requests is None else f"{job.requests:,} requests"
        tokens = "" if job.max_output_tokens is None else f"{job.max_output_tokens:,}"
        rows.append((
            f"classify: {job.classifier}", "", "1", f"{job.jobs} jobs", "", "", asked,
            tokens, "",
            number(job.gpu_hours, 2), number(job.requested_gpu_hours, 2),
            allocation_flag(job.gpu_hours, job.requested_gpu_hours),
        ))  # fmt: skip
    known = [plan.gpu_hours for plan in plans if plan.gpu_hours is not None] + [
        c.gpu_hours for c in classifiers
    ]
    unknown = len(plans) - sum(plan.gpu_hours is not None for plan in plans)
    requested = math.fsum(
        [plan.requested_gpu_hours for plan in plans] + [c.requested_gpu_hours for c in classifiers]
    )
    total_hours = f"{math.fsum(known):,.2f}" + (f" (+{unknown} unknown)" if unknown else "")
    rows.append((
        "total", "", "", str(sum(p.shards for p in plans)), str(sum(p.shards_done for p in plans)),
        str(sum(p.shards_to_run for p in plans)), f"{sum(p.requests for p in plans):,}",
        f"{sum(p.max_output_tokens for p in plans):,}", "", total_hours, f"{requested:,.2f}", "",
    ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    left = (0, len(header) - 1)
    lines = ["  ".join(cell.ljust(width) if i in left else cell.rjust(width) for i, (cell, width) in
                       enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]  # fmt: skip
    notes = [
        "max_out_tokens: every request generating max_tokens (an upper bound); gpu_h: the shards still",
        "to run at the table's tokens/s plus one model load (plan.load_minutes), times the model's GPUs;",
        "asked_gpu_h: the allocation the jobs request (models.<m>.resources.runtime x GPUs; a",
        "classifier's jobs x the runtime profiles/slurm gives them); short: below the estimate",
        f"(the job would hit its wall time: raise it); over {OVER_ASK:g}x: more than {OVER_ASK:g} times",
        "the estimate (paid for and unused: lower it).",
    ]
    if unknown:
        notes.append("?: model size unknown: set plan.model_sizes_b.<model> (billions of parameters).")
    return "\n".join([*lines, "", *notes])


def study_gpu_hours(config: Mapping[str, Any], n_per_shard: int) -> float | None:
    """GPU-hours of the whole study (every shard, none counted as done) with ``n_per_shard``
    posts per shard; None when a model's size is unknown."""
    sized = {**config, "generation": {**config["generation"], "n_per_shard": n_per_shard}}
    plans = plan_study(sized, workdir=Path("/nonexistent-affalign-workdir"))
    hours = [plan.gpu_hours for plan in plans]
    return None if any(h is None for h in hours) else math.fsum(hours)


def gpu_hours_by_shard_size(config: Mapping[str, Any]) -> dict[int, float | None]:
    """GPU-hours of the whole study at each cell size the design job predicts (rule
    ``design``)."""
    n = config["generation"]["n_per_shard"]
    return {n * multiple: study_gpu_hours(config, n * multiple) for multiple in SIZE_MULTIPLES}


def design_summary_path(classifier: str) -> Path:
    """Where the design job writes its summary (``workflow/rules/design.smk``)."""
    return Path("results/design", classifier, "summary.parquet")


@dataclass(frozen=True)
class PrecisionOption:
    """One option of posts per shard: the study's GPU-hours and the worst (largest) predicted
    precision over issues × groups of one classifier's design table."""

    n_per_shard: int
    gpu_hours: float | None
    cell_halfwidth: float
    model_level_halfwidth: float
    mde_tendency: float
    mde_steerability: float
    mde_tendency_more_topics: float
    mde_steerability_more_topics: float


def precision_options(config: Mapping[str, Any], summary: Any) -> list[PrecisionOption]:
    """Per cell size of a design ``summary`` (polars frame, ``affalign.design``): GPU-hours of
    the whole study at that size and the worst precision over issues × groups (NaN where a
    test over so few topics cannot reach ``align.alpha``)."""
    import polars as pl

    def worst(rows: pl.DataFrame, column: str) -> float:
        values = rows[column].drop_nulls().drop_nans()
        has_nan = rows[column].is_nan().any() or rows[column].is_null().any()
        return float("nan") if has_nan or values.is_empty() else float(values.max())

    options = []
    for n in sorted(summary["n_model"].unique().to_list()):
        at_n = summary.filter(pl.col("n_model") == n)
        configured, more = at_n.filter(pl.col("configured_topics")), at_n.filter(~pl.col("configured_topics"))
        options.append(PrecisionOption(
            int(n), study_gpu_hours(config, int(n)), worst(configured, "cell_halfwidth"),
            worst(configured, "model_level_halfwidth"), worst(configured, "mde_tendency"),
            worst(configured, "mde_steerability"), worst(more, "mde_tendency"),
            worst(more, "mde_steerability"),
        ))  # fmt: skip
    return options


def format_precision(
    config: Mapping[str, Any], workdir: Path = Path("."), target_halfwidth: float | None = None
) -> str:
    """What each option of posts per shard buys, per classifier with a design table in
    ``workdir``, and (with ``target_halfwidth``) the smallest option whose model-level
    half-width reaches it; without a design table, how to make one."""
    from affalign.io import read_provenance, read_table

    configured_n = config["generation"]["n_per_shard"]
    blocks = []
    for classifier in config["classifiers"]:
        path = design_summary_path(classifier)
        if not (workdir / path).is_file():
            blocks.append(
                f"{classifier}: no design table ({path}). Predict precision from the human posts alone,\n"
                f"  without any model or GPU:  snakemake --cores 2 {path.with_suffix('.csv')}\n"
                "  (on a cluster, add --profile profiles/slurm), then run affalign plan again."
            )
            continue
        summary = read_table(workdir / path)
        made_for = read_provenance(workdir / path).get("n_per_shard")
        options = precision_options(config, summary)
        topics = summary.filter(summary["configured_topics"])["n_topics"].max()
        lines = [
            f"{classifier}: predicted precision ({path}; the worst issue × group; 95 % half-widths near"
            f" identity, minimum detectable effects at align.alpha {config['align']['alpha']} and 80 % power)"
        ]
        if made_for is not None and made_for != configured_n:
            lines.append(f"  (the table was made for n_per_shard {made_for}; the config says {configured_n})")
        rows = [("n_per_shard", "gpu_h", "cell ±", "model-level ±", f"MDE tendency ({topics} topics)",
                 "MDE steerability", f"with {2 * topics} topics: tendency", "steerability")]  # fmt: skip

        def value(number: float, digits: int = 3) -> str:
            return "—" if number is None or math.isnan(number) else f"{number:.{digits}f}"

        for option in options:
            marker = " *" if option.n_per_shard == configured_n else ""
            rows.append((
                f"{option.n_per_shard}{marker}", hours_text(option.gpu_hours),
                value(option.cell_halfwidth), value(option.model_level_halfwidth), value(option.mde_tendency),
                value(option.mde_steerability), value(option.mde_tendency_more_topics),
                value(option.mde_steerability_more_topics),
            ))  # fmt: skip
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines += [
            "  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
            for row in rows
        ]
        lines.append(
            "  *: the configured n_per_shard; —: no sign-flip test over this many topics can reach"
            " align.alpha, or not even the other group's distance is detected with 80 % power"
        )
        if target_halfwidth is not None:
            lines.append("  " + target_line(options, target_halfwidth))
        blocks.append("\n".join(lines))
    notes = (
        "Assumes model posts as variable as the group's own and one true alignment on every topic "
        "(affalign.design.precision); more model posts cannot narrow what the group's own posts leave"
        " uncertain."
    )
    return "\n\n".join([*blocks, notes])


def hours_text(hours: float | None) -> str:
    """GPU-hours with two decimals, three below one hour (so that small studies differ)."""
    return "?" if hours is None else f"{hours:,.2f}" if hours >= 1 else f"{hours:.3f}"


def target_line(options: list[PrecisionOption], target: float) -> str:
    """The smallest option whose model-level half-width is at most ``target``, with its cost."""
    for option in options:
        if option.model_level_halfwidth <= target:
            cost = hours_text(option.gpu_hours)
            return (
                f"target model-level half-width {target}: n_per_shard {option.n_per_shard} reaches "
                f"{option.model_level_halfwidth:.3f} ({cost} GPU-hours for the study)"
            )
    best = min(options, key=lambda option: option.model_level_halfwidth)
    return (
        f"target model-level half-width {target}: no option reaches it (n_per_shard {best.n_per_shard} "
        f"gives {best.model_level_halfwidth:.3f}); more human posts per cell or more topics narrow it"
    )
