"""Command line of the LLM classification jobs (rules ``classify_generated_llm`` and
``classify_human_llm``): ``python -m affalign.classify.llm_job``, a consumer of the judge
model's service like the generation shard jobs.

What determines the affect files arrives as ``--settings`` (the rule's params, JSON); how
the job runs (requests in flight, timeouts, where the shard store is) as separate flags the
workflow keeps out of its rerun decision.
"""

from __future__ import annotations

import argparse
import json
import sys

from affalign.io import CONSUMER_MODULES, run_logged, start_job


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Classify posts through a served language model.")
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--settings", required=True, help="what determines the affect files, as JSON")
    parser.add_argument("--generator", default=None, help="the model that wrote the posts (none: human)")
    parser.add_argument("--inputs", nargs="+", required=True)
    parser.add_argument("--outputs", nargs="+", required=True)
    parser.add_argument("--service-file", required=True)
    parser.add_argument("--server-log", default="")
    parser.add_argument("--store", default=None)
    parser.add_argument("--log", required=True)
    parser.add_argument("--max-in-flight", type=int, required=True)
    parser.add_argument("--server-start-timeout", type=float, required=True)
    parser.add_argument("--request-timeout", type=float, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not start_job(args.log, CONSUMER_MODULES, f"LLM classifier {args.classifier}"):
        return 1
    from affalign.classify.llm import classify_files_through_service

    run_logged(
        args.log,
        lambda: classify_files_through_service(
            args.classifier,
            json.loads(args.settings),
            args.inputs,
            args.outputs,
            service_file=args.service_file,
            server_log=args.server_log,
            store=args.store,
            max_in_flight=args.max_in_flight,
            server_start_timeout_s=args.server_start_timeout,
            request_timeout_s=args.request_timeout,
            generator=args.generator,
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
