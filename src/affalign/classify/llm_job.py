"""Command line of the LLM classification jobs (rules ``classify_generated_llm`` and
``classify_human_llm``): ``python -m affalign.classify.llm_job``, a consumer of the judge
model's service like the generation shard jobs; or, for an endpoint judge (rules
``classify_generated_llm_endpoint`` and ``classify_human_llm_endpoint``), a client of the
endpoint (``--endpoint``, no service file), as ``generate_endpoint``'s jobs are.

What determines the affect files arrives as ``--settings`` (the rule's params, JSON); how
the job runs (requests in flight, timeouts, where the shard store is) as the consumer flags
of :mod:`affalign.service.consumer`, which the workflow keeps out of its rerun decision.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial

from affalign.service import ConsumerOptions, consumer_parser, run_consumer_job


def parser() -> argparse.ArgumentParser:
    # A judge served by the workflow (--service-file) or an endpoint (--endpoint); each job
    # has several outputs.
    parser = consumer_parser("Classify posts through a served language model.", output=False, endpoint=True)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--generator", default=None, help="the model that wrote the posts (none: human)")
    parser.add_argument("--inputs", nargs="+", required=True)
    parser.add_argument("--outputs", nargs="+", required=True)
    return parser


def write(args: argparse.Namespace, options: ConsumerOptions):
    # Imported once the job has begun its log (run_consumer_job): a module its
    # interpreter lacks is then named in one line there.
    from affalign.classify.llm import classify_files_through_service

    return classify_files_through_service(
        args.classifier, json.loads(args.settings), args.inputs, args.outputs, options, args.generator
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.service_file is None and args.endpoint is None:
        parser().error("one of --service-file and --endpoint is required")
    # The judge's name, which ConsumerOptions gives an endpoint (its resource, its messages).
    args.model = json.loads(args.settings).get("model")
    return run_consumer_job(args, f"LLM classifier {args.classifier}", partial(write, args))


if __name__ == "__main__":
    sys.exit(main())
