"""Which Python runs the model-side jobs, chosen once for the whole workflow.

On a cluster the model runtime (vLLM's CUDA build, CUDA torch) and the orchestration
(Snakemake, its SLURM plugin) live in two environments that cannot be one (vLLM 0.32 needs
numpy < 2.4 on Python 3.11, the SLURM plugin numpy >= 2.4.5). ``runtime.python`` in the
config names the runtime's interpreter; without it the interpreter running Snakemake is
used, as on a laptop or in CI where one environment holds everything.
``workflow/rules/common.smk`` asks :func:`runtime_python` and nothing else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def runtime_python(config: Mapping[str, Any], base: Path | None = None) -> str:
    """The interpreter for model-side jobs: ``runtime.python`` (``~`` and ``$VARIABLES``
    expanded, relative paths taken from ``base``, default the working directory), else the
    interpreter running this code. Not resolved through symlinks: a virtualenv's
    ``bin/python`` is a symlink, and only the link finds the environment's packages."""
    configured = (config.get("runtime") or {}).get("python")
    if not configured:
        return sys.executable
    path = Path(os.path.expandvars(os.path.expanduser(configured)))
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return str(path)


def runtime_device(config: Mapping[str, Any]) -> str:
    """``runtime.device``: auto (a job given GPUs must be able to use them), cuda or cpu."""
    return (config.get("runtime") or {}).get("device", "auto")


def runtime_problems(config: Mapping[str, Any], source: str, base: Path | None = None) -> list[str]:
    """What keeps the configured runtime interpreter from running jobs (empty when fine).

    Checked before any job is submitted: a wrong path would otherwise fail every model job
    only once it has waited in the GPU queue.
    """
    configured = (config.get("runtime") or {}).get("python")
    if not configured:
        return []
    python = Path(runtime_python(config, base))
    if not python.exists():
        return [f"{source}: runtime.python: {python} does not exist (make cluster-env PREFIX=... builds it)"]
    if not (python.is_file() and os.access(python, os.X_OK)):
        return [f"{source}: runtime.python: {python} is not an executable file"]
    return []
