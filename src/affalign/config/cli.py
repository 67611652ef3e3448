"""The ``affalign`` command: what a lab runs on a login node around Snakemake.

* ``affalign weights fetch --configfile X`` downloads every hub weight of the config into
  ``HF_HOME`` and locks it to its commit (``config/weights.lock``);
* ``affalign weights check --configfile X`` says whether every one is there, offline;
* ``affalign plan --configfile X`` prints shards, requests, tokens and GPU-hours per model.

Each subcommand dispatches to its module (``affalign.config.weights``,
``affalign.config.plan``; both read a config before anything runs, so they belong to the
config stage); this module only parses the command line. ``affalign`` is the console script
(pyproject), ``python -m affalign.config.cli`` the same without it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def load_config(path: str, validated: bool) -> dict[str, Any]:
    """The config file, read strictly; with ``validated``, schema-checked with every default
    filled in (as the workflow reads it)."""
    from affalign.config import read_config_file

    config = read_config_file(path)
    if validated:
        from snakemake.utils import validate

        validate(config, str(SCHEMA), set_default=True)
    return config


def weights_command(args: argparse.Namespace) -> int:
    from affalign.config.weights import WeightsError, check_weights, fetch_weights, hub_references

    config = load_config(args.configfile, validated=False)
    lock = Path(args.lock or config.get("weights_lock", "config/weights.lock"))
    if not hub_references(config):
        print(f"{args.configfile}: no model or classifier is a hub id; nothing to {args.action}")
        return 0
    try:
        if args.action == "fetch":
            fetch_weights(config, lock)
            print(f"locked in {lock}")
        check_weights(config, lock, configfile=args.configfile)
    except WeightsError as error:
        print(f"affalign: {error}", file=sys.stderr)
        return 1
    print(f"{len(hub_references(config))} hub weights present at their locked commits ({lock})")
    return 0


def plan_command(args: argparse.Namespace) -> int:
    from affalign.config.plan import format_plan, plan_study

    config = load_config(args.configfile, validated=True)
    print(format_plan(plan_study(config, Path(args.directory))))
    from affalign.config.endpoints import format_endpoint_plan, plan_endpoints

    endpoints = plan_endpoints(config, Path(args.directory))
    if endpoints:
        print("\n" + format_endpoint_plan(endpoints))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="affalign", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)

    weights = commands.add_parser("weights", help="fetch or check the hub weights of a config")
    weights.add_argument("action", choices=("fetch", "check"))
    weights.add_argument("--configfile", default="config/config.yaml")
    weights.add_argument("--lock", help="the weights lock (default: weights_lock of the config)")
    weights.set_defaults(run=weights_command)

    plan = commands.add_parser("plan", help="shards, requests, tokens and GPU-hours per model")
    plan.add_argument("--configfile", default="config/config.yaml")
    plan.add_argument("--directory", default=".", help="the working directory whose results/ count as done")
    plan.set_defaults(run=plan_command)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (OSError, ValueError) as error:
        print(f"affalign: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
