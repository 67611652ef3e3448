"""Command line of the opinion shard jobs (rules ``opinion_shard`` and
``opinion_shard_endpoint``): ``python -m affalign.opinions.job``, run by the interpreter
the workflow chose for model-side jobs (``runtime.python``), not the one running Snakemake.

What determines the shard's content arrives as ``--settings`` (the rule's params, JSON);
how the job runs (requests in flight, timeouts, an endpoint's limits and key variable) as
the consumer flags of :mod:`affalign.service.consumer`, which the workflow keeps out of its
rerun decision. The log begins with the interpreter; a missing HTTP client library stops
the job with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial

from affalign.service import ConsumerOptions, consumer_parser, run_consumer_job


def parser() -> argparse.ArgumentParser:
    parser = consumer_parser("Score a survey topic under one context through a model.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--survey", required=True)
    parser.add_argument("--context", required=True, help="default or <method>-<group>")
    parser.add_argument("--questions", required=True, help="the survey's questions table")
    parser.add_argument(
        "--detected", default=None, help="an endpoint's log-probability method, detected before the run"
    )
    return parser


def write(args: argparse.Namespace, options: ConsumerOptions):
    # Imported once the job has begun its log (run_consumer_job): a module its
    # interpreter lacks is then named in one line there.
    from affalign.opinions.client import OpinionShard, Scoring, read_logprob_support, write_opinion_shard
    from affalign.opinions.positional import Steering
    from affalign.opinions.settings import OpinionSettings

    # The dict as recorded is the shard's provenance and part of its store key; the class
    # reads it.
    recorded = json.loads(args.settings)
    settings = OpinionSettings.from_params(recorded)
    shard = OpinionShard(
        model=args.model,
        survey=args.survey,
        context=args.context,
        steering=Steering.from_config(settings.steering) if settings.steering else None,
    )
    scoring = Scoring(
        mode=settings.logprobs,
        top_logprobs=settings.top_logprobs,
        chat=settings.chat,
        chat_template_kwargs=settings.chat_template_kwargs,
    )
    # An endpoint model (rule opinion_shard_endpoint): the log-probability method detected
    # before the run when it is left to "auto".
    detected = read_logprob_support(args.detected, options.endpoint) if options.endpoint else None
    return write_opinion_shard(
        shard,
        model_info=recorded,
        questions_file=args.questions,
        scoring=scoring,
        output=args.output,
        options=options,
        detected=detected,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_consumer_job(args, f"opinion shards of {args.model}", partial(write, args))


if __name__ == "__main__":
    sys.exit(main())
