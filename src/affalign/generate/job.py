"""Command line of the generation shard jobs (rules ``generate`` and ``generate_endpoint``):
``python -m affalign.generate.job``, run by the interpreter the workflow chose for
model-side jobs (``runtime.python``), not the one running Snakemake.

What determines the shard's content arrives as ``--settings`` (the rule's params, JSON);
how the job runs (requests in flight, timeouts, an endpoint's limits and key variable)
as separate flags that the workflow keeps out of its rerun decision. The log begins with
the interpreter; a missing HTTP client library stops the job with one line.
"""

from __future__ import annotations

import argparse
import json
import sys

from affalign.io import run_logged, start_job

# The HTTP client of the service and of endpoints.
CONSUMER_MODULES = ("aiohttp",)


def add_operational_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that change how a shard job runs, never what it writes."""
    parser.add_argument("--max-in-flight", type=int, required=True, help="requests in flight at once")
    parser.add_argument(
        "--server-start-timeout", type=float, required=True, help="seconds to wait for the service"
    )
    parser.add_argument("--request-timeout", type=float, required=True, help="seconds per request")
    parser.add_argument(
        "--endpoint", default=None, help="an endpoint model's models.<m>.endpoint entry as JSON"
    )


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Generate one shard through a model's service or endpoint.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--issue", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--prompt-type", required=True)
    parser.add_argument(
        "--settings", required=True, help="what determines the shard (the rule's params) as JSON"
    )
    parser.add_argument("--prompts", required=True, help="the prompt templates file")
    parser.add_argument(
        "--service-file", default=None, help="the model's service file (none for an endpoint)"
    )
    parser.add_argument("--server-log", default="", help="the model server's log, quoted when it fails")
    parser.add_argument("--store", default=None, help="the model's shard store folder")
    parser.add_argument("--output", required=True)
    parser.add_argument("--log", required=True, help="the rule's log file")
    add_operational_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not start_job(args.log, CONSUMER_MODULES, f"generation shards of {args.model}"):
        return 1
    from affalign.generate.prompts import ShardSpec
    from affalign.generate.shards import Sampling, write_generation_shard
    from affalign.service import EndpointClient, EndpointSpec

    settings = json.loads(args.settings)
    shard = ShardSpec(
        global_seed=settings["seed"],
        model=args.model,
        kind=settings["kind"],
        issue=args.issue,
        issue_name=settings["issue_name"],
        topic=args.topic,
        topic_name=settings["topic_name"],
        prompt_type=args.prompt_type,
        count=settings["n_per_shard"],
    )
    # An endpoint model (rule generate_endpoint) is reached at its base URL, not through a
    # service file.
    client = (
        EndpointClient(EndpointSpec.from_config(args.model, {"endpoint": json.loads(args.endpoint)}))
        if args.endpoint
        else None
    )
    run_logged(
        args.log,
        lambda: write_generation_shard(
            shard,
            model_info=settings,
            service_file=args.service_file,
            server_log=args.server_log,
            output=args.output,
            prompts_file=args.prompts,
            sampling=Sampling(settings["max_tokens"], settings["temperature"], settings["top_p"]),
            max_in_flight=args.max_in_flight,
            server_start_timeout_s=args.server_start_timeout,
            request_timeout_s=args.request_timeout,
            store=args.store,
            client=client,
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
