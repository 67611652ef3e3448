"""Command line of the generation shard jobs (rules ``generate`` and ``generate_endpoint``):
``python -m affalign.generate.job``, run by the interpreter the workflow chose for
model-side jobs (``runtime.python``), not the one running Snakemake.

What determines the shard's content arrives as ``--settings`` (the rule's params, JSON);
how the job runs (requests in flight, timeouts, an endpoint's limits and key variable)
as the consumer flags of :mod:`affalign.service.consumer`, which the workflow keeps out of
its rerun decision. The log begins with the interpreter; a missing HTTP client library
stops the job with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial

from affalign.service import ConsumerOptions, consumer_parser, run_consumer_job


def parser() -> argparse.ArgumentParser:
    parser = consumer_parser("Generate one shard through a model's service or endpoint.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--issue", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--prompt-type", required=True)
    parser.add_argument("--prompts", required=True, help="the prompt templates file")
    return parser


def write(args: argparse.Namespace, options: ConsumerOptions):
    # Imported once the job has begun its log (run_consumer_job): a module its
    # interpreter lacks is then named in one line there.
    from affalign.generate.prompts import ShardSpec
    from affalign.generate.settings import GenerationSettings
    from affalign.generate.shards import Sampling, write_generation_shard

    # The dict as recorded is the shard's provenance and part of its store key; the class
    # reads it.
    recorded = json.loads(args.settings)
    settings = GenerationSettings.from_params(recorded)
    shard = ShardSpec(
        global_seed=settings.seed,
        model=args.model,
        kind=settings.kind,
        issue=args.issue,
        issue_name=settings.issue_name,
        topic=args.topic,
        topic_name=settings.topic_name,
        prompt_type=args.prompt_type,
        count=settings.n_per_shard,
    )
    return write_generation_shard(
        shard,
        model_info=recorded,
        prompts_file=args.prompts,
        sampling=Sampling(settings.max_tokens, settings.temperature, settings.top_p),
        output=args.output,
        options=options,
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_consumer_job(args, f"generation shards of {args.model}", partial(write, args))


if __name__ == "__main__":
    sys.exit(main())
