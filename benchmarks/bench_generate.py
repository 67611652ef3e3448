"""Generation throughput: affalign's service path against vLLM's offline engine.

Runs the same prompts, seeds and sampling parameters through
(a) the full path: ``python -m affalign.service.server`` (vLLM's OpenAI-compatible server) and
    shard consumers (``affalign.generate.shards``) running concurrently, and
(b) vLLM's offline ``LLM.generate`` in one call,
in the same run, and prints output tokens/s for both, their ratio, and the server's
start-up seconds. Engine load time is excluded from both rates.

Usage (CPU, tiny random-weight model built on the fly)::

    python benchmarks/bench_generate.py
    python benchmarks/bench_generate.py --model resources/models/SmolLM2-135M-Instruct
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

from affalign.generate.prompts import ShardSpec, build_requests, load_templates  # noqa: E402
from affalign.generate.shards import Sampling, write_generation_shard  # noqa: E402
from affalign.service.server import is_cpu_build  # noqa: E402

CPU_ENGINE = {
    "dtype": "float32",
    "max_model_len": 512,
    "max_num_seqs": 64,
    "kv_cache_memory_bytes": 1 << 30,
    "enforce_eager": True,
    "enable_chunked_prefill": False,
}
GPU_ENGINE = {"dtype": "bfloat16", "max_model_len": 1024, "gpu_memory_utilization": 0.8}
TOPICS = [("mask-mandates", "mask mandates and policies"), ("vaccines", "COVID-19 vaccines")]
PROMPT_TYPES = ["default", "liberal", "conservative"]


def shard_keys(count: int) -> list[tuple[str, str, str]]:
    keys = [(topic, name, prompt_type) for topic, name in TOPICS for prompt_type in PROMPT_TYPES]
    return keys[:count]


def bench_shard(topic: str, topic_name: str, prompt_type: str, count: int) -> ShardSpec:
    return ShardSpec(
        global_seed=1, model="bench", kind="base", issue="covid-19", issue_name="COVID-19",
        topic=topic, topic_name=topic_name, prompt_type=prompt_type, count=count,
    )  # fmt: skip


def serve(model_dir: Path, engine: dict, workdir: Path) -> tuple[subprocess.Popen, Path, float]:
    service = workdir / "service.json"
    command = [
        sys.executable, "-m", "affalign.service.server",
        "--model", "bench", "--source", str(model_dir), "--engine", json.dumps(engine),
        "--seed", "0", "--service-file", str(service), "--server-log", str(workdir / "server.log"),
        "--start-timeout", "900",
    ]  # fmt: skip
    began = time.time()
    process = subprocess.Popen(command, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    while True:
        state = json.loads(service.read_text()) if service.exists() else {}
        if state.get("status") == "ready":
            return process, service, float(state["healthy_after_s"])
        if process.poll() is not None or time.time() - began > 900:
            raise SystemExit(f"server did not start; see {workdir / 'server.log'}")
        time.sleep(0.5)


def run_service_path(model_dir: Path, engine: dict, args: argparse.Namespace, workdir: Path) -> dict:
    process, service, startup = serve(model_dir, engine, workdir)
    sampling = Sampling(args.max_tokens, 1.0, 1.0)
    tokens: list[int] = []
    errors: list[BaseException] = []

    def shard(topic: str, topic_name: str, prompt_type: str) -> None:
        try:
            frame = write_generation_shard(
                bench_shard(topic, topic_name, prompt_type, args.per_shard), model_info={"kind": "base"},
                service_file=service, server_log=workdir / "server.log",
                output=workdir / f"{topic}-{prompt_type}.parquet",
                prompts_file=REPO / "resources/prompts.yaml", sampling=sampling,
                max_in_flight=args.max_in_flight, server_start_timeout_s=60, request_timeout_s=600,
            )  # fmt: skip
            tokens.append(int(frame["output_tokens"].sum()))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=shard, args=key) for key in shard_keys(args.shards)]
    began = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.time() - began
    process.terminate()
    process.wait(timeout=120)
    if errors:
        raise errors[0]
    return {"tokens": sum(tokens), "seconds": wall, "startup_s": startup}


def run_offline(model_dir: Path, engine: dict, args: argparse.Namespace) -> dict:
    from vllm import LLM, SamplingParams

    pools = load_templates(REPO / "resources/prompts.yaml")
    prompts, params = [], []
    for topic, name, prompt_type in shard_keys(args.shards):
        for request in build_requests(pools, bench_shard(topic, name, prompt_type, args.per_shard)):
            prompts.append(request.prompt)
            params.append(
                SamplingParams(
                    max_tokens=args.max_tokens, temperature=1.0, top_p=1.0, seed=request.seed, stop=["\n"]
                )
            )
    options = {key: value for key, value in engine.items() if key != "enable_chunked_prefill"}
    if "enable_chunked_prefill" in engine:
        options["enable_chunked_prefill"] = engine["enable_chunked_prefill"]
    began = time.time()
    llm = LLM(model=str(model_dir), seed=0, **options)
    load = time.time() - began
    began = time.time()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.time() - began
    return {"tokens": sum(len(o.outputs[0].token_ids) for o in outputs), "seconds": wall, "load_s": load}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny random Llama built now)")
    parser.add_argument("--shards", type=int, default=6, help="concurrent shard consumers (max 6)")
    parser.add_argument("--per-shard", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--max-in-flight", type=int, default=32)
    args = parser.parse_args()
    engine = CPU_ENGINE if is_cpu_build() else GPU_ENGINE
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="affalign-bench-", dir="/tmp") as scratch:
        workdir = Path(scratch)
        model_dir = args.model
        if model_dir is None:
            from tiny_models import build_tiny_llama

            model_dir = build_tiny_llama(workdir / "tiny-llama")
        service = run_service_path(model_dir, engine, args, workdir)
        offline = run_offline(model_dir, engine, args)
    service_rate = service["tokens"] / service["seconds"]
    offline_rate = offline["tokens"] / offline["seconds"]
    print(f"model: {model_dir}  engine options: {engine}")
    print(f"requests: {args.shards} shards x {args.per_shard}, max_tokens {args.max_tokens}")
    for name, run, rate in [
        ("(a) service + consumers ", service, service_rate),
        ("(b) offline LLM.generate", offline, offline_rate),
    ]:
        print(f"{name}: {run['tokens']} tokens in {run['seconds']:.1f} s = {rate:.1f} tok/s")
    print(f"ratio (a)/(b): {service_rate / offline_rate:.2f}")
    print(f"server start-up to healthy: {service['startup_s']:.1f} s")
    print(f"offline engine load: {offline['load_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
