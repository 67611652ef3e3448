"""Generation throughput: affalign's service path against vLLM's offline engine.

Runs the same prompts, seeds and sampling parameters through
(a) the full path: ``python -m affalign.service.server`` (vLLM's OpenAI-compatible server) and
    shard consumers (``affalign.generate.shards``) running concurrently, and
(b) vLLM's offline ``LLM.generate`` in one call,
and prints output tokens/s for both and their ratio. Engine load time is excluded from
both rates. The pair is measured ``--repeats`` times (alternating which path goes first);
the ratio is reported as the median with its range, since on a shared machine one pair
can be off by several per cent.

Each path runs in a child process in a session of its own, and the benchmark stops the
whole session when the child has reported (vLLM's offline engine keeps its ``EngineCore``
running after ``generate`` returns, and it ignores SIGTERM): the benchmark exits by itself
and leaves nothing running. Each child also has a private temporary folder (``TMPDIR``),
removed once its session is stopped: vLLM's offline engine, stopped with SIGKILL, would
otherwise leave its IPC sockets in the system temporary folder (7 per run). The benchmark
counts the socket files there before and after and prints how many it left.

Usage (CPU, tiny random-weight model built on the fly)::

    python benchmarks/bench_generate.py
    python benchmarks/bench_generate.py --model resources/models/SmolLM2-135M-Instruct
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests" / "support"))

from affalign.generate.prompts import ShardSpec, build_requests, load_templates  # noqa: E402
from affalign.generate.shards import Sampling, write_generation_shard  # noqa: E402
from affalign.service import ConsumerOptions  # noqa: E402
from affalign.service.metrics import occupancy_figures, read_samples, samples_file  # noqa: E402
from affalign.service.server import is_cpu_build, private_temp_folder  # noqa: E402
from affalign.service.session import stop_session  # noqa: E402

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
PATHS = {"service": "(a) service + consumers ", "offline": "(b) offline LLM.generate"}
# Every process of a benchmark run carries this marker, so that none can be missed at the end.
RUN_MARKER = "AFFALIGN_BENCH_RUN"


# Where a path's CPU time goes, by process role (see cpu_by_role).
ROLES = {
    "worker": "vLLM worker (model forward)",
    "engine": "EngineCore (scheduling, batching)",
    "api": "vLLM API server (HTTP, tokenisation, detokenisation)",
    "wrapper": "affalign server wrapper (metrics sampling)",
    "consumers": "shard consumers (HTTP client, JSON)",
    "front": "LLM front end (tokenisation, detokenisation)",
    "other": "other (session guard, resource tracker)",
}


def process_role(process, own_pid: int, wrapper_pid: int | None) -> str:
    """The role of one process of a path (keys of ROLES): vLLM titles its processes
    'VLLM::EngineCore' and 'VLLM::Worker' (their names on Linux); the rest of the server's
    session is its API server and helpers."""
    try:
        label = process.name() + " " + " ".join(process.cmdline())
    except Exception:  # gone meanwhile
        return "other"
    if "VLLM::Worker" in label:
        return "worker"
    if "EngineCore" in label:
        return "engine"
    if process.pid == own_pid:
        return "front" if wrapper_pid is None else "consumers"
    if process.pid == wrapper_pid:
        return "wrapper"
    if "vllm.entrypoints" in label:
        return "api"
    return "other"


def cpu_by_role(roots: list[int], own_pid: int, wrapper_pid: int | None) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the processes under ``roots``, summed by
    role. Taken before and after a measured window, the difference is the window's."""
    import psutil

    seen: dict[int, object] = {}
    for root in roots:
        try:
            top = psutil.Process(root)
        except psutil.NoSuchProcess:
            continue
        for process in [top, *top.children(recursive=True)]:
            seen[process.pid] = process
    figures: dict[str, float] = {}
    for process in seen.values():
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        role = process_role(process, own_pid, wrapper_pid)
        figures[role] = figures.get(role, 0.0) + times.user + times.system
    return figures


def cpu_window(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    # A process that exists only after (or only before) still counts what it used inside.
    return {role: round(after.get(role, 0.0) - before.get(role, 0.0), 2) for role in sorted(after)}


def shard_keys(count: int) -> list[tuple[str, str, str]]:
    keys = [(topic, name, prompt_type) for topic, name in TOPICS for prompt_type in PROMPT_TYPES]
    return keys[:count]


def bench_shard(topic: str, topic_name: str, prompt_type: str, count: int) -> ShardSpec:
    return ShardSpec(
        global_seed=1, model="bench", kind="base", issue="covid-19", issue_name="COVID-19",
        topic=topic, topic_name=topic_name, prompt_type=prompt_type, count=count,
    )  # fmt: skip


# --- One path, in its own process ------------------------------------------------------


def serve(
    model_dir: Path, engine: dict, workdir: Path, name: str = "bench"
) -> tuple[subprocess.Popen, Path, float]:
    """The service path's server (``python -m affalign.service.server``) serving ``name``, once ready:
    the process, its service file and seconds to healthy."""
    service = workdir / "service.json"
    command = [
        sys.executable, "-m", "affalign.service.server",
        "--model", name, "--source", str(model_dir), "--engine", json.dumps(engine),
        "--seed", "0", "--service-file", str(service), "--server-log", str(workdir / "server.log"),
        "--start-timeout", "900", "--metrics-interval", "0.5",
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


def consume_shard(
    key: tuple[str, str, str], args: argparse.Namespace, workdir: Path, service: Path, ready, go, results
) -> None:
    """One shard consumer, in a process of its own as the workflow runs it (spawned: a forked
    copy of a process that has started polars' and aiohttp's machinery misbehaves). It says
    when it has imported everything and waits for ``go``, so that start-up stays out of the
    measured window; then its output tokens, or its error, go to ``results``."""
    topic, topic_name, prompt_type = key
    try:
        import aiohttp  # noqa: F401  (the client's, imported before the window)

        ready.put(key)
        go.wait()
        cpu_began = time.process_time()
        frame = write_generation_shard(
            bench_shard(topic, topic_name, prompt_type, args.per_shard), model_info={"kind": "base"},
            prompts_file=REPO / "resources/prompts.yaml", sampling=Sampling(args.max_tokens, 1.0, 1.0),
            output=workdir / f"{topic}-{prompt_type}.parquet",
            options=ConsumerOptions(
                service_file=service, server_log=workdir / "server.log",
                max_in_flight=args.max_in_flight, server_start_timeout_s=60, request_timeout_s=600,
            ),
        )  # fmt: skip
        results.put((key, int(frame["output_tokens"].sum()), time.process_time() - cpu_began, None))
    except BaseException as error:
        results.put((key, 0, 0.0, repr(error)))


def run_service_path(model_dir: Path, engine: dict, args: argparse.Namespace, workdir: Path) -> dict:
    import multiprocessing

    process, service, startup = serve(model_dir, engine, workdir)
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    consumers = [
        context.Process(target=consume_shard, args=(key, args, workdir, service, ready, go, results))
        for key in shard_keys(args.shards)
    ]
    for consumer in consumers:
        consumer.start()
    for _ in consumers:
        ready.get(timeout=300)
    cpu_before = cpu_by_role([process.pid], os.getpid(), process.pid)
    began = time.time()
    go.set()
    outcomes = [results.get() for _ in consumers]
    ended = time.time()
    cpu = cpu_window(cpu_before, cpu_by_role([process.pid], os.getpid(), process.pid))
    # A consumer that has ended is no longer in the process tree: each reports its own.
    cpu["consumers"] = round(sum(seconds for _, _, seconds, _ in outcomes), 2)
    for consumer in consumers:
        consumer.join()
    process.terminate()  # the wrapper stops the server's whole session
    process.wait(timeout=120)
    errors = [f"{key}: {error}" for key, _, _, error in outcomes if error]
    if errors:
        raise RuntimeError("; ".join(errors))
    # How full the server was while the consumers ran, as the job account measures it.
    samples = read_samples([samples_file(workdir / "server.log")])
    occupancy = occupancy_figures(samples, [(began, ended)], engine.get("max_num_seqs"), None)
    return {
        "tokens": sum(tokens for _, tokens, _, _ in outcomes),
        "seconds": ended - began,
        "startup_s": startup,
        "occupancy": occupancy["occupancy"],
        "low_occupancy_s": occupancy["low_occupancy_s"],
        "cpu_s": cpu,
    }


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
    began = time.time()
    llm = LLM(model=str(model_dir), seed=0, **engine)
    load = time.time() - began
    cpu_before = cpu_by_role([os.getpid()], os.getpid(), None)
    began = time.time()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.time() - began
    cpu = cpu_window(cpu_before, cpu_by_role([os.getpid()], os.getpid(), None))
    return {
        "tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
        "seconds": wall,
        "startup_s": load,
        "cpu_s": cpu,
        "tokenisation_s": tokenisation_seconds(llm, prompts, [o.outputs[0].token_ids for o in outputs]),
    }


def tokenisation_seconds(llm, prompts: list[str], outputs: list) -> float:
    """Seconds one process takes to tokenise the prompts and detokenise the outputs with the
    model's tokenizer, as both paths must (the service path in its API server): the part of
    the service path's extra CPU that is tokenisation."""
    tokenizer = llm.get_tokenizer()
    began = time.process_time()
    for prompt in prompts:
        tokenizer.encode(prompt)
    for token_ids in outputs:
        tokenizer.decode(token_ids)
    return round(time.process_time() - began, 2)


def run_one_path(args: argparse.Namespace) -> int:
    """The child: measure one path and write its figures to ``--result`` (then it may hang:
    the parent stops its session)."""
    engine = CPU_ENGINE if is_cpu_build() else GPU_ENGINE
    workdir = Path(args.workdir)
    if args.run == "service":
        figures = run_service_path(args.model, engine, args, workdir)
    else:
        figures = run_offline(args.model, engine, args)
    Path(args.result).write_text(json.dumps(figures))
    return 0


# --- The benchmark: each path in a child, the child's session stopped after it -------


def measure(path: str, args: argparse.Namespace, model_dir: Path, scratch: Path, marker: str) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"{path}-", dir=scratch))
    # The child's own temporary folder: what its vLLM processes leave there (sockets of an
    # engine stopped with SIGKILL) goes with it.
    private_temp = private_temp_folder(prefix="affalign-bench-")
    result = workdir / "result.json"
    log = workdir / "child.log"
    command = [
        sys.executable, __file__, "--run", path, "--workdir", str(workdir), "--result", str(result),
        "--model", str(model_dir), "--shards", str(args.shards), "--per-shard", str(args.per_shard),
        "--max-tokens", str(args.max_tokens), "--max-in-flight", str(args.max_in_flight),
    ]  # fmt: skip
    env = dict(os.environ, VLLM_NO_USAGE_STATS="1", HF_HUB_OFFLINE="1", **{RUN_MARKER: marker})
    env["TMPDIR"] = str(private_temp)
    try:
        with open(log, "wb") as stream:
            child = subprocess.Popen(
                command, stdout=stream, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
    except BaseException:
        shutil.rmtree(private_temp, ignore_errors=True)
        raise
    try:
        deadline = time.monotonic() + args.timeout
        while not result.exists():
            if child.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                raise SystemExit(f"the {path} path failed (code {child.poll()}); {log}:\n{tail}")
            time.sleep(0.5)
    finally:
        stop_session(child.pid, child, grace_s=10.0)
        shutil.rmtree(private_temp, ignore_errors=True)
    return json.loads(result.read_text())


def temp_sockets() -> set[str]:
    """The socket files in the system temporary folder (vLLM's IPC endpoints are sockets)."""
    root = tempfile.gettempdir()
    found = set()
    for entry in os.scandir(root):
        try:
            if stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                found.add(os.path.join(root, entry.name))
        except OSError:  # removed meanwhile
            continue
    return found


def left_running(marker: str) -> dict[int, str]:
    """Processes of this benchmark still running at its end (stopped now; there should be none)."""
    from processes import processes_with_environment, stop_marked_processes

    left = processes_with_environment(RUN_MARKER, marker)
    if left:
        stop_marked_processes(RUN_MARKER, marker, grace_s=10.0)
    return left


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny random Llama built now)")
    parser.add_argument("--shards", type=int, default=6, help="concurrent shard consumers (max 6)")
    parser.add_argument("--per-shard", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--max-in-flight", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per path and run")
    parser.add_argument("--run", choices=sorted(PATHS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return run_one_path(args)

    marker = uuid.uuid4().hex
    sockets_before = temp_sockets()
    with tempfile.TemporaryDirectory(prefix="affalign-bench-", dir="/tmp") as scratch_name:
        scratch = Path(scratch_name)
        model_dir = args.model
        if model_dir is None:
            from tiny_models import build_tiny_llama

            model_dir = build_tiny_llama(scratch / "tiny-llama")
        engine = CPU_ENGINE if is_cpu_build() else GPU_ENGINE
        print(f"model: {model_dir}  engine options: {engine}")
        print(
            f"requests: {args.shards} shards x {args.per_shard}, max_tokens {args.max_tokens}, "
            f"{args.repeats} runs of both paths",
            flush=True,
        )
        ratios: list[float] = []
        profiles: list[dict] = []
        cores = len(os.sched_getaffinity(0))
        for run in range(1, args.repeats + 1):
            order = ["service", "offline"] if run % 2 else ["offline", "service"]
            figures = {path: measure(path, args, model_dir, scratch, marker) for path in order}
            rates = {path: figures[path]["tokens"] / figures[path]["seconds"] for path in PATHS}
            ratios.append(rates["service"] / rates["offline"])
            for path, label in PATHS.items():
                tokens, seconds, startup = (figures[path][key] for key in ("tokens", "seconds", "startup_s"))
                print(
                    f"run {run} {label}: {tokens} tokens in {seconds:.1f} s = {rates[path]:.1f} tok/s"
                    f" (start-up {startup:.1f} s){occupancy_note(figures[path])}"
                )
                print(f"      CPU: {cpu_note(figures[path], cores)}")
            print(f"run {run} ratio (a)/(b): {ratios[-1]:.3f}", flush=True)
            profiles.append(figures)
        left = left_running(marker)
    sockets_after = temp_sockets()
    spread = max(ratios) - min(ratios)
    print(
        f"ratio (a)/(b): median {statistics.median(ratios):.3f}, range {min(ratios):.3f}-{max(ratios):.3f} "
        f"(spread {spread:.3f}) over {len(ratios)} runs"
    )
    print(where_the_time_goes(profiles, cores))
    print(f"processes left running: {', '.join(left.values()) or 'none'}")
    # Others' processes may add or remove sockets meanwhile: new ones still there are ours
    # unless something else on the machine made them.
    new = sockets_after - sockets_before
    print(
        f"socket files in {tempfile.gettempdir()}: {len(sockets_before)} before, {len(sockets_after)} after, "
        f"{len(new)} new left behind{': ' + ', '.join(sorted(new)[:5]) if new else ''}"
    )
    return 1 if left else 0


def cpu_note(figures: dict, cores: int) -> str:
    cpu = figures["cpu_s"]
    total = sum(cpu.values())
    parts = ", ".join(f"{role} {seconds:.1f} s" for role, seconds in cpu.items())
    busy = total / (figures["seconds"] * cores)
    return f"{parts}; {total:.1f} CPU s = {busy:.0%} of {cores} cores over the run"


def where_the_time_goes(profiles: list[dict], cores: int) -> str:
    """The profile over all runs (medians): CPU seconds per 1,000 output tokens by role for
    both paths, and the ratio the CPU work alone predicts when both paths keep every core
    busy (offline CPU per token / service CPU per token)."""

    def per_k_tokens(figures: dict, role: str) -> float:
        return 1000 * figures["cpu_s"].get(role, 0.0) / figures["tokens"]

    def median(path: str, role: str) -> float:
        return statistics.median(per_k_tokens(figures[path], role) for figures in profiles)

    lines = ["where the time goes (median CPU s per 1,000 output tokens):"]
    totals = {}
    path_roles = {
        "service": ("worker", "engine", "api", "wrapper", "consumers", "other"),
        "offline": ("worker", "engine", "front", "other"),
    }
    for path, roles in path_roles.items():
        shares = {role: median(path, role) for role in roles}
        totals[path] = statistics.median(
            sum(per_k_tokens(figures[path], role) for role in figures[path]["cpu_s"]) for figures in profiles
        )
        lines.append(
            f"  {PATHS[path].strip()}: "
            + ", ".join(f"{ROLES[role]} {value:.3f}" for role, value in shares.items())
            + f"; total {totals[path]:.3f}"
        )
    tokenisation = statistics.median(
        1000 * f["offline"]["tokenisation_s"] / f["offline"]["tokens"] for f in profiles
    )
    busy = statistics.median(
        sum(f["service"]["cpu_s"].values()) / (f["service"]["seconds"] * cores) for f in profiles
    )
    lines.append(
        f"  tokenisation + detokenisation alone (one process, same tokenizer): {tokenisation:.3f}"
        f"; the service path kept {busy:.0%} of {cores} cores busy"
    )
    lines.append(
        f"  ratio the CPU work predicts on {cores} saturated cores: "
        f"{totals['offline'] / totals['service']:.3f}"
    )
    return "\n".join(lines)


def occupancy_note(figures: dict) -> str:
    if figures.get("occupancy") is None:
        return ""
    return f", occupancy {figures['occupancy']:.0%} ({figures['low_occupancy_s']:.1f} s below half)"


if __name__ == "__main__":
    sys.exit(main())
