"""SLURM resources that follow from the config: which partition, GPU type and flags a job
asks for. ``workflow/rules/common.smk`` turns these into rule resources; the SLURM executor
plugin turns those into sbatch flags (``gpu_model`` -> ``--gpus=<type>:<n>``, ``constraint``
-> ``-C``, ``qos`` -> ``--qos``, ``nodes`` -> ``--nodes``, ``slurm_extra`` verbatim).

Partitions come from the environment of the Snakemake process, as the profile's do:
``$AFFALIGN_SLURM_PARTITION`` for jobs with GPUs and ``$AFFALIGN_SLURM_CPU_PARTITION`` (the
profile's default) for every other job. A variable that is not set reaches sbatch as its
literal name, so SLURM's error names it. None means "leave the resource out" (Snakemake
drops resources whose value is None, and the plugin then emits no flag; the profile's
default-resources do not fill it in).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

GPU_PARTITION_VARIABLE = "AFFALIGN_SLURM_PARTITION"
CPU_PARTITION_VARIABLE = "AFFALIGN_SLURM_CPU_PARTITION"
# Per-model keys of models.<m>.resources passed to the plugin under the same name.
MODEL_SLURM_KEYS = ("gpu_model", "constraint", "qos", "slurm_extra")


def gpu_partition(
    model_resources: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The partition of a GPU job: the model's own ``resources.partition``, else
    ``$AFFALIGN_SLURM_PARTITION`` (its literal name when unset)."""
    environ = os.environ if environ is None else environ
    own = (model_resources or {}).get("partition")
    return own or environ.get(GPU_PARTITION_VARIABLE) or f"${GPU_PARTITION_VARIABLE}"


def model_slurm_value(model_resources: Mapping[str, Any], key: str) -> str | None:
    """``models.<m>.resources.<key>`` for one of :data:`MODEL_SLURM_KEYS`, or None."""
    if key not in MODEL_SLURM_KEYS:
        raise KeyError(key)
    return model_resources.get(key)


def cpu_partition(environ: Mapping[str, str] | None = None) -> str:
    """The partition of a job without a GPU: ``$AFFALIGN_SLURM_CPU_PARTITION`` (its literal
    name when unset), as the profile's default."""
    environ = os.environ if environ is None else environ
    return environ.get(CPU_PARTITION_VARIABLE) or f"${CPU_PARTITION_VARIABLE}"


def classifier_partition(needs_gpu: bool, environ: Mapping[str, str] | None = None) -> str:
    """Transformer classifiers go to the GPU partition, lexicons to the CPU partition. Both
    explicitly: a rule whose resource function gives None gets no partition at all (not the
    profile's default), and SLURM then picks its own default partition."""
    return gpu_partition(environ=environ) if needs_gpu else cpu_partition(environ)


def model_partition(config: Mapping[str, Any]) -> Callable[[Any], str]:
    """A resource function: the partition of the job's model (wildcard ``model``), the same
    for its server and every consumer of its service group (a group's string resources
    must agree)."""
    return lambda wildcards: gpu_partition(config["models"][wildcards.model]["resources"])


def server_resources(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resources of a model server job (rules ``serve_model`` and ``serve_judge``,
    wildcard ``model``), from ``models.<m>.engine`` and ``models.<m>.resources``: its GPUs
    (the tensor-parallel size), cores, memory and runtime (these two grow with each attempt),
    partition and SLURM flags, on one node (vLLM's tensor parallelism does not span nodes;
    the plugin would otherwise let SLURM spread ``--gpus``)."""

    def resources(wildcards: Any) -> Mapping[str, Any]:
        return config["models"][wildcards.model]["resources"]

    def per_attempt(key: str) -> Callable[[Any, int], Any]:
        return lambda wildcards, attempt: resources(wildcards)[key] * attempt

    def slurm(key: str) -> Callable[[Any], str | None]:
        return lambda wildcards: model_slurm_value(resources(wildcards), key)

    return {
        "gpu": lambda wildcards: int(config["models"][wildcards.model]["engine"]["tensor_parallel_size"]),
        "cpus_per_task": lambda wildcards: resources(wildcards)["cpus"],
        "mem_mb": per_attempt("mem_mb"),
        "runtime": per_attempt("runtime"),
        "nodes": 1,
        "slurm_partition": model_partition(config),
        **{key: slurm(key) for key in MODEL_SLURM_KEYS},
    }
