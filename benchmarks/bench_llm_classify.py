"""LLM classifier throughput (classifiers.<c>.type: llm): posts per second through the
judge's vLLM server at several request-in-flight limits, and how many answers were unreadable.

Starts ``python -m affalign.service.server`` on the model (the same server the workflow's
serve_judge rule starts), then classifies the demo's human posts (both issues) with the
NRC emotions and their one-line definitions (``.test/llm-classifier``) through
:func:`affalign.classify.llm.classify_files_through_service`, once per in-flight limit, and
stops the server (the wrapper stops its whole session).

Usage (CPU build; the embedded model, ``make prepare-model``)::

    python benchmarks/bench_llm_classify.py
    python benchmarks/bench_llm_classify.py --in-flight 1 8 32 --model DIR
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from bench_generate import CPU_ENGINE, serve  # noqa: E402  (the generation benchmark's CPU engine and server)

from affalign.classify.llm import classify_files_through_service  # noqa: E402
from affalign.io import file_sha256  # noqa: E402
from affalign.service import ConsumerOptions  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "resources/models/SmolLM2-135M-Instruct")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    scenario = yaml.safe_load((REPO / ".test/llm-classifier/config.yaml").read_text())
    spec = scenario["classifiers"]["smollm2-judge"]
    prompt = REPO / spec["prompt"]
    settings = {
        "model": "judge",
        "labels": spec["labels"],
        "prompt": str(prompt),
        "prompt_sha256": file_sha256(prompt),
        "chat": True,
        "seed": 0,
        "max_tokens": args.max_tokens,
        "revision": None,
    }
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as scratch:
        workdir = Path(scratch)
        posts = workdir / "posts.parquet"
        pl.concat(
            [
                pl.read_csv(path).select("post_id", "text")
                for path in sorted((REPO / "resources/demo/human").glob("*.csv"))
            ]
        ).write_parquet(posts)
        count = pl.read_parquet(posts).height
        process, service, startup = serve(args.model, CPU_ENGINE, workdir, name="judge")
        print(f"server healthy after {startup:.1f} s; {count} posts, {len(spec['labels'])} labels each")
        print(f"{'in flight':>9}  {'seconds':>8}  {'posts/s':>8}  {'unparsed':>8}  {'retries':>7}")
        try:
            for limit in args.in_flight:
                output = workdir / f"affect-{limit}.parquet"
                began = time.time()
                options = ConsumerOptions(
                    service_file=service, server_log=workdir / "server.log", max_in_flight=limit,
                    server_start_timeout_s=60, request_timeout_s=600,
                )  # fmt: skip
                totals = classify_files_through_service("bench", settings, [posts], [output], options)
                seconds = time.time() - began
                print(
                    f"{limit:>9}  {seconds:>8.1f}  {count / seconds:>8.2f}  "
                    f"{totals['unparsed']:>8}  {totals['retries']:>7}",
                    flush=True,
                )
        finally:
            process.terminate()  # the wrapper stops the server's whole session
            process.wait(timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
