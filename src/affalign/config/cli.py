"""The ``affalign`` command: what a lab runs on a login node around Snakemake.

* ``affalign weights fetch --configfile X`` downloads every hub weight of the config into
  ``HF_HOME`` and locks it to its commit (``config/weights.lock``);
* ``affalign weights check --configfile X`` says whether every one is there, offline;
* ``affalign plan --configfile X`` prints shards, requests, tokens and GPU-hours per model,
  and, where the design job has run, the precision each option of posts per shard buys
  (``--target-halfwidth H``: the smallest that reaches H, and its cost);
* ``affalign check --configfile X`` runs the whole pre-flight a real run does (schema,
  semantic and file checks, ``runtime.python``, hub weights, endpoint budgets) and prints
  each problem on one line (:mod:`affalign.config.preflight`).

Each takes ``--config KEY=VALUE`` as Snakemake does: ``--config only_models=[m]`` narrows
the weights, the plan and the checks to the models the run covers. Every subcommand reads
the config as the workflow does (strictly, schema-validated); a user error is one line on
stderr and exit status 1, never a traceback.

Each subcommand dispatches to its module (``affalign.config.weights``,
``affalign.config.plan``, ``affalign.config.preflight``; all read a config before anything
runs, so they belong to the config stage); this module only parses the command line.
``affalign`` is the console script (pyproject), ``python -m affalign.config.cli`` the same
without it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def weights_command(args: argparse.Namespace) -> int:
    from affalign.config.checks import check_model_selection
    from affalign.config.preflight import load_study_config
    from affalign.config.weights import check_weights, fetch_weights, hub_references

    config = load_study_config(args.configfile, args.config)
    check_model_selection(config, args.configfile)
    lock = Path(args.lock or config["weights_lock"])
    references = hub_references(config)
    if not references:
        print(f"{args.configfile}: no model or classifier of this run is a hub id; nothing to {args.action}")
        return 0
    if args.action == "fetch":
        fetch_weights(config, lock)
        print(f"locked in {lock}")
    check_weights(config, lock, configfile=args.configfile)
    print(f"{len(references)} hub weights present at their locked commits ({lock})")
    return 0


def plan_command(args: argparse.Namespace) -> int:
    from affalign.config.endpoints import format_endpoint_plan, plan_endpoints
    from affalign.config.plan import format_plan, format_precision, plan_classification, plan_study
    from affalign.config.preflight import config_problems, load_study_config

    directory = Path(args.directory)
    config = load_study_config(args.configfile, args.config)
    problems = config_problems(config, args.configfile, directory)
    if problems:
        for problem in problems:
            print(f"affalign: {problem}", file=sys.stderr)
        return 1
    print(format_plan(plan_study(config, directory), plan_classification(config, directory)))
    endpoints = plan_endpoints(config, directory)
    if endpoints:
        print("\n" + format_endpoint_plan(endpoints))
    print("\n" + format_precision(config, directory, args.target_halfwidth))
    return 0


def check_command(args: argparse.Namespace) -> int:
    from affalign.config.preflight import preflight

    problems = preflight(args.configfile, args.config, Path(args.directory))
    for problem in problems:
        print(f"affalign: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.configfile}: ready to run (schema, files, runtime.python, hub weights, endpoint budgets)")
    return 0


def add_config_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--configfile", default="config/config.yaml")
    command.add_argument(
        "--config",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="as snakemake --config, e.g. only_models=[m] (the run then covers only those models)",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="affalign", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)

    weights = commands.add_parser("weights", help="fetch or check the hub weights of a config")
    weights.add_argument("action", choices=("fetch", "check"))
    add_config_options(weights)
    weights.add_argument("--lock", help="the weights lock (default: weights_lock of the config)")
    weights.set_defaults(run=weights_command)

    plan = commands.add_parser("plan", help="shards, requests, tokens and GPU-hours per model")
    add_config_options(plan)
    plan.add_argument("--directory", default=".", help="the working directory whose results/ count as done")
    plan.add_argument(
        "--target-halfwidth",
        type=float,
        metavar="H",
        help="print the smallest n_per_shard whose predicted model-level 95 %% half-width is at most H",
    )
    plan.set_defaults(run=plan_command)

    check = commands.add_parser("check", help="the whole pre-flight of a real run, one line per problem")
    add_config_options(check)
    check.add_argument("--directory", default=".", help="the working directory the run starts in")
    check.set_defaults(run=check_command)
    return root


def main(argv: list[str] | None = None) -> int:
    from affalign.config.weights import WeightsError

    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (OSError, ValueError, WeightsError) as error:  # ConfigError is a ValueError
        print(f"affalign: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
