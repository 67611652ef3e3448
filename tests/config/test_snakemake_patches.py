"""Every change the workflow makes to Snakemake's internals (affalign.config.snakemake_patches):
the version guard, and one test per patch that it is applied and does what it is for, on
Snakemake's own code with small stand-ins for its jobs, DAG and executor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import snakemake
import snakemake.api
from snakemake.dag import DAG
from snakemake.executors import local
from snakemake.io import IOFile
from snakemake.jobs import Job
from snakemake.logging import logger

from affalign.config import SnakemakeVersionError, apply_snakemake_patches
from affalign.config.snakemake_patches import (
    WRITTEN_FOR,
    check_snakemake_version,
    forget_records_of_stopped_services,
    keep_finished_shards_of_failed_groups,
    leave_unremovable_empty_folders,
    start_every_group_member_at_once,
)

PATCHED = [(DAG, "cleanup_workdir"), (DAG, "init"), (Job, "cleanup"), (local.Executor, "run_job")]


@pytest.fixture()
def unpatched(monkeypatch):
    """Snakemake's own methods, put back after the test (the patches change classes)."""
    originals = {}
    for owner, name in PATCHED:
        method = getattr(owner, name)
        marked = [m for m in vars(method) if m in {"leaves_unremovable_folders", "forgets_stopped_services"}]
        assert not marked and not hasattr(method, "keeps_finished_shards"), "already patched in this process"
        monkeypatch.setattr(owner, name, method)
        originals[name] = method
    return originals


@pytest.fixture()
def warnings(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(logger, "warning", lambda message, *args, **kwargs: seen.append(str(message)))
    return seen


# --- The version guard ------------------------------------------------------------------------


def test_the_installed_snakemake_is_the_one_the_patches_were_written_for():
    check_snakemake_version()
    assert tuple(int(part) for part in snakemake.__version__.split(".")[:2]) == WRITTEN_FOR


@pytest.mark.parametrize("version", ["9.27.0", "9.27.1", "9.27.12"])
def test_any_release_of_that_minor_version_passes(version):
    check_snakemake_version(version)


@pytest.mark.parametrize("version", ["9.28.0", "9.26.3", "10.0.0", "8.27.1", "nonsense"])
def test_another_version_stops_with_what_to_do(version, unpatched):
    with pytest.raises(SnakemakeVersionError) as caught:
        apply_snakemake_patches(version=version)
    message = str(caught.value)
    assert f"Snakemake {version}" in message and "Snakemake 9.27" in message
    assert "snakemake==9.27.*" in message and "affalign.config.snakemake_patches" in message
    # Nothing was patched.
    assert all(getattr(owner, name) is unpatched[name] for owner, name in PATCHED)


def test_every_patch_is_applied_once(unpatched):
    apply_snakemake_patches(["results/services/m.json"])
    patched = {name: getattr(owner, name) for owner, name in PATCHED}
    assert all(patched[name] is not unpatched[name] for name in patched)
    apply_snakemake_patches(["results/services/m.json"])
    assert {name: getattr(owner, name) for owner, name in PATCHED} == patched


# --- DAG.cleanup_workdir -------------------------------------------------------------------------


def test_an_empty_folder_that_cannot_be_removed_is_left_with_a_warning(
    tmp_path, monkeypatch, unpatched, warnings
):
    folder = tmp_path / "results" / "generated" / "m"
    folder.mkdir(parents=True)
    job = SimpleNamespace(output=[str(folder / "missing.parquet")], input=[])
    dag = SimpleNamespace(jobs=[job], is_edit_notebook_job=lambda job: False)

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr("snakemake.dag.os.removedirs", refuse)
    with pytest.raises(PermissionError):
        DAG.cleanup_workdir(dag)  # Snakemake's own: the run would end in this traceback
    leave_unremovable_empty_folders()
    DAG.cleanup_workdir(dag)
    assert warnings == [f"affalign: left the empty folder {folder}: Permission denied"]


# --- Job.cleanup ----------------------------------------------------------------------------------


def failed_member(rule: str, output: Path) -> SimpleNamespace:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("finished")
    # A rule whose workflow keeps no cache of file states: files are looked at as they are.
    rule = SimpleNamespace(name=rule, workflow=SimpleNamespace(iocache=SimpleNamespace(active=False)))
    path = IOFile(str(output))
    path.rule = rule
    return SimpleNamespace(rule=rule, output=[path], storage_output=[])


def test_a_failed_group_keeps_its_finished_shards_and_removes_other_outputs(tmp_path, unpatched, warnings):
    # Snakemake's own clean-up removes a finished sibling's shard with the failed job's outputs.
    sibling = failed_member("generate", tmp_path / "before" / "a.parquet")
    asyncio.run(Job.cleanup(sibling, []))
    assert not Path(sibling.output[0]).exists()
    keep_finished_shards_of_failed_groups()
    shard = failed_member("generate", tmp_path / "generated" / "a.parquet")
    opinion = failed_member("opinion_shard", tmp_path / "opinions" / "b.parquet")
    other = failed_member("align", tmp_path / "align" / "c.parquet")
    for job in (shard, opinion, other):
        asyncio.run(Job.cleanup(job, []))
    assert Path(shard.output[0]).is_file() and Path(opinion.output[0]).is_file()
    assert not Path(other.output[0]).exists()
    assert len(warnings) == 2 and "kept the finished shard" in warnings[0]


# --- local.Executor.run_job -------------------------------------------------------------------


def run_group(run_job, members: int) -> concurrent.futures.Future:
    """A group job run the way Snakemake's local executor runs one: its coordinator is
    submitted to the pool and submits every member to the same pool. Members wait for
    each other (as consumers of one server run together); the coordinator waits for all."""
    barrier = threading.Barrier(members, timeout=3)
    done: list[concurrent.futures.Future] = []
    executor = SimpleNamespace(workers=1, pool=concurrent.futures.ThreadPoolExecutor(max_workers=1))

    def run_group_job(job):
        futures = [executor.pool.submit(barrier.wait) for _ in range(members)]
        return [future.result() for future in futures]

    executor.run_group_job = run_group_job
    finished = threading.Event()
    executor._callback = lambda info, future: (done.append(future), finished.set())
    executor.report_job_submission = lambda info: None
    group = type("Group", (), {"is_group": lambda self: True, "__len__": lambda self: members})()
    run_job(executor, group)
    assert finished.wait(timeout=10), "the group never ended"
    executor.pool.shutdown(wait=False, cancel_futures=True)
    return done[0]


def test_every_member_of_a_group_starts_at_once(unpatched):
    # Unpatched, the coordinator holds one of the pool's threads: a member waits for another to end.
    with pytest.raises(threading.BrokenBarrierError):
        run_group(local.Executor.run_job, members=3).result()
    start_every_group_member_at_once()
    assert len(run_group(local.Executor.run_job, members=3).result()) == 3


# --- DAG.init ------------------------------------------------------------------------------------


def test_records_of_stopped_services_are_dropped_before_the_dag_is_built(tmp_path, monkeypatch, unpatched):
    monkeypatch.chdir(tmp_path)
    order: list[str] = []

    async def init(dag, *args, **kwargs):
        order.append("init")

    monkeypatch.setattr(DAG, "init", init)
    Path("results/services").mkdir(parents=True)
    Path("results/services/running.json").write_text("{}")
    persistence = SimpleNamespace(cleanup_metadata=lambda f: order.append(f"forget {f}"))
    forget_records_of_stopped_services(["results/services/running.json", "results/services/stopped.json"])
    asyncio.run(DAG.init(SimpleNamespace(workflow=SimpleNamespace(persistence=persistence))))
    # The running server's record is kept; the stopped one's goes before needrun is decided.
    assert order == ["forget results/services/stopped.json", "init"]


def test_the_workflow_stops_on_another_snakemake_before_planning_anything(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    # Snakemake itself, told it is another release, parses the workflow (a dry run) with a
    # config that names a model folder nobody prepared: the version is looked at first.
    config = (REPO / "config" / "demo.yaml").read_text()
    configfile = tmp_path / "unprepared.yaml"
    configfile.write_text(config.replace("resources/models/", "resources/not-prepared/"))
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, snakemake; snakemake.__version__ = '9.28.0'; "
            "from snakemake.cli import main; main(sys.argv[1:])",
            "--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO), "-n",
            "--configfile", str(configfile),
        ],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    output = run.stdout + run.stderr  # Snakemake's logger writes its errors to stdout
    assert run.returncode != 0
    assert "as they are in Snakemake 9.27, and this is Snakemake 9.28.0" in output
    assert "Building DAG of jobs" not in output
    assert "not-prepared" not in output
