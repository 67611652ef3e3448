"""The pre-flight of a real run, outside Snakemake: ``affalign check --configfile X``.

What ``workflow/rules/common.smk`` checks before it submits anything, in the same order and
with the same functions: the config files read strictly, ``--config`` overrides applied as
Snakemake applies them (``only_models`` included), the schema, the semantic and file checks
(:func:`~affalign.config.checks.check_config`, which also checks the endpoint models'
settings and key variables, without sending a request), ``runtime.python``, the hub weights
of the models the run covers, and each endpoint model's planned requests against its
budget. Each problem is one line; nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from affalign.config.checks import ConfigError, check_config
from affalign.config.files import read_config_file, validate_config


def config_overrides(entries: Sequence[str]) -> dict[str, Any]:
    """``--config KEY=VALUE ...`` parsed exactly as Snakemake parses it (``only_models=[a,b]``)."""
    if not entries:
        return {}
    from snakemake.cli import parse_config

    try:
        return parse_config(list(entries))
    except ValueError as error:
        raise ConfigError(f"--config {' '.join(entries)}: {error}") from None


def load_study_config(configfile: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The config a run with ``--configfile configfile --config overrides`` would see: read
    strictly, overrides merged in as Snakemake merges them, validated against the schema with
    every default filled in. Raises :class:`ConfigError` (one line) for any user error."""
    from snakemake.utils import update_config

    try:
        config = read_config_file(configfile)
    except FileNotFoundError:
        raise ConfigError(f"{configfile}: no such config file") from None
    except OSError as error:
        raise ConfigError(f"{configfile}: cannot read it: {error.strerror or error}") from None
    if config is None:
        config = {}
    if isinstance(config, dict):
        update_config(config, config_overrides(overrides))
    validate_config(config, str(configfile))
    return config


def config_problems(config: Mapping[str, Any], source: str, workdir: Path = Path(".")) -> list[str]:
    """What stops a run of a schema-valid config before its first job, without the weights:
    the semantic and file checks (the first problem they find) and ``runtime.python``."""
    from affalign.config.runtime import runtime_problems

    problems = []
    try:
        check_config(config, source, workdir)
    except ConfigError as error:
        problems.append(str(error))
    return problems + runtime_problems(config, source, workdir)


def weights_problems(
    config: Mapping[str, Any], source: str, workdir: Path = Path("."), cache_dir: Path | None = None
) -> list[str]:
    """One line per hub weight of the run (its models, every classifier) that is not locked or
    not in ``HF_HOME`` at its locked commit, then the command that fetches them."""
    from affalign.config.weights import (
        WeightsError,
        fetch_command,
        hub_references,
        missing_weights,
        read_lock,
    )

    lock_path = Path(config["weights_lock"])
    try:
        lock = read_lock(lock_path if lock_path.is_absolute() else workdir / lock_path)
    except WeightsError as error:
        return [f"{source}: weights_lock: {error}"]
    problems = missing_weights(hub_references(config, workdir), lock, cache_dir)
    if not problems:
        return []
    return [f"{source}: weights: {problem}" for problem in problems] + [
        f"{source}: weights: fetch them with the same HF_HOME: {fetch_command(source, lock_path)}"
    ]


def endpoint_budget_problems(config: Mapping[str, Any], source: str, workdir: Path = Path(".")) -> list[str]:
    """Endpoint models whose missing shards would send more requests than their budget."""
    from affalign.config.endpoints import plan_endpoints

    return [
        f"{source}: models.{plan.model}.endpoint: {plan.requests:,} requests planned, over its request "
        f"budget of {plan.budget:,} (the run would not start)"
        for plan in plan_endpoints(config, workdir)
        if plan.over_budget
    ]


def preflight(
    configfile: str | Path,
    overrides: Sequence[str] = (),
    workdir: Path = Path("."),
    cache_dir: Path | None = None,
) -> list[str]:
    """Every problem a real run of ``configfile`` (with ``--config overrides``, started in
    ``workdir``) would stop for, one line each; empty when it would start."""
    source = str(configfile)
    try:
        config = load_study_config(configfile, overrides)
    except ConfigError as error:
        return [str(error)]
    problems = config_problems(config, source, workdir)
    problems += weights_problems(config, source, workdir, cache_dir)
    try:
        problems += endpoint_budget_problems(config, source, workdir)
    except (ConfigError, ValueError) as error:
        problems.append(f"{source}: endpoints: {error}")
    return problems
