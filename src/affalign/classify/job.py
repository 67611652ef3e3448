"""Command line of the classification jobs (rules ``classify_generated`` and
``classify_human``): ``python -m affalign.classify.job``, run by the interpreter the
workflow chose for model-side jobs (``runtime.python``), not the one running Snakemake.

The log begins with the interpreter; a transformer classifier whose interpreter lacks torch
or transformers stops with one line saying so.
"""

from __future__ import annotations

import argparse
import json
import sys

from affalign.io import run_logged, start_job

# What each classifier type imports beyond affalign's own dependencies.
MODULES_BY_TYPE = {"hf": ("torch", "transformers"), "hf-binary-set": ("torch", "transformers")}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Classify posts into affect labels, one file per input.")
    parser.add_argument("--classifier", required=True, help="the classifier's name (config key)")
    parser.add_argument("--spec", required=True, help="the classifier's config (locked revisions) as JSON")
    parser.add_argument("--inputs", nargs="+", required=True, help="post tables to classify")
    parser.add_argument("--outputs", nargs="+", required=True, help="affect tables, one per input")
    parser.add_argument("--log", required=True, help="the rule's log file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    spec = json.loads(args.spec)
    needed_for = f"classifier {args.classifier} of type {spec['type']}"
    if not start_job(args.log, MODULES_BY_TYPE.get(spec["type"], ()), needed_for):
        return 1
    from affalign.classify.run import classify_files

    run_logged(args.log, lambda: classify_files(args.classifier, spec, args.inputs, args.outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
