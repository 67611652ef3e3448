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

from affalign.io import CONSUMER_MODULES, add_consumer_flags, run_logged, start_job


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
    add_consumer_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not start_job(args.log, CONSUMER_MODULES, f"generation shards of {args.model}"):
        return 1
    from affalign.generate.prompts import ShardSpec
    from affalign.generate.shards import Sampling, write_generation_shard
    from affalign.service import consumer_options

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
    options = consumer_options(args)
    run_logged(
        args.log,
        lambda: write_generation_shard(
            shard,
            model_info=settings,
            prompts_file=args.prompts,
            sampling=Sampling(settings["max_tokens"], settings["temperature"], settings["top_p"]),
            **options,
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
