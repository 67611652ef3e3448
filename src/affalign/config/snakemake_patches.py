"""Where the workflow changes Snakemake's own behaviour, all in one place.

Each patch replaces one method of Snakemake's internals, read in the version named by
:data:`WRITTEN_FOR`; :func:`apply_snakemake_patches` (called by ``workflow/rules/common.smk``
as it is parsed, on the submitting host and inside every cluster job) first checks that the
running Snakemake is that version and stops with :class:`SnakemakeVersionError` otherwise:
a patch of a method that moved or changed would fail silently or in the middle of a run.
Upgrading Snakemake means reading each patched method again, adjusting the patch, and
raising :data:`WRITTEN_FOR` (``tests/config/test_snakemake_patches.py`` checks what each one is
for).

* :func:`leave_unremovable_empty_folders` — ``DAG.cleanup_workdir``;
* :func:`keep_finished_shards_of_failed_groups` — ``Job.cleanup``;
* :func:`start_every_group_member_at_once` — ``snakemake.executors.local.Executor.run_job``;
* :func:`forget_records_of_stopped_services` — ``DAG.init``.

Each is applied once (a marker on the replacement) and imports Snakemake only when applied,
so ``affalign.config`` imports without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# The Snakemake release (major, minor) whose internals the patches below were written for.
WRITTEN_FOR = (9, 27)

# Rules whose jobs write their one output atomically as their last act (the shard is
# written whole or not at all), so an output that exists when the job ends is complete.
SHARDS_WRITTEN_WHOLE = ("generate", "opinion_shard")


# The service files of the workflow last parsed in this process (see
# forget_records_of_stopped_services).
SERVICE_FILES: list[str] = []


class SnakemakeVersionError(RuntimeError):
    """The running Snakemake is not the one the patches were written for."""


def check_snakemake_version(version: str | None = None) -> None:
    """Raise :class:`SnakemakeVersionError` unless ``version`` (default: the running
    Snakemake's) is a release of :data:`WRITTEN_FOR`."""
    if version is None:
        from snakemake import __version__ as version
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        major_minor = ()
    if major_minor != WRITTEN_FOR:
        written_for = ".".join(map(str, WRITTEN_FOR))
        raise SnakemakeVersionError(
            f"affalign: this workflow patches Snakemake internals as they are in Snakemake {written_for}, "
            f"and this is Snakemake {version}. Install the pinned version (pip install "
            f"'snakemake=={written_for}.*', or `make env` from the lock), or check each patch in "
            f"affalign.config.snakemake_patches against Snakemake {version} and raise WRITTEN_FOR."
        )


def apply_snakemake_patches(service_files: Iterable[str] = (), version: str | None = None) -> None:
    """Check the Snakemake version, then apply every patch (each once); ``service_files``:
    the service files whose records :func:`forget_records_of_stopped_services` drops."""
    check_snakemake_version(version)
    leave_unremovable_empty_folders()
    keep_finished_shards_of_failed_groups()
    start_every_group_member_at_once()
    forget_records_of_stopped_services(service_files)


def leave_unremovable_empty_folders() -> None:
    """After a run Snakemake removes the empty folders of missing outputs
    (DAG.cleanup_workdir) and, in 9.27, dies with a traceback that buries the failed job's
    own message when one of them cannot be removed (an output folder the user may not
    write, e.g. one a collaborator made on a shared filesystem). Leave such a folder and
    say so instead."""
    from snakemake.dag import DAG
    from snakemake.logging import logger

    cleanup = DAG.cleanup_workdir
    if getattr(cleanup, "leaves_unremovable_folders", False):
        return

    def tolerant_cleanup(dag):
        try:
            cleanup(dag)
        except OSError as error:
            logger.warning(f"affalign: left the empty folder {error.filename}: {error.strerror}")

    tolerant_cleanup.leaves_unremovable_folders = True
    DAG.cleanup_workdir = tolerant_cleanup


def keep_finished_shards_of_failed_groups() -> None:
    """When one job of a service group fails, Snakemake 9 fails the whole group: the
    scheduler (scheduling/job_scheduler.py, JobScheduler._handle_error) calls
    GroupJob.postprocess(error=True), which runs Job.postprocess(error=True) for every
    member (jobs.py): that records each member's metadata as finished
    (persistence.finished) and then, unless --keep-incomplete, deletes every member's
    existing outputs (Job.cleanup), the shards of siblings that had finished included. No
    setting spares only the finished members (--keep-incomplete spares the outputs of
    every failed job of every rule, and records them as complete). Shards are written
    whole or not at all, so a shard that exists is a finished one: keep it, with the
    metadata Snakemake has just recorded for it. (A rerun still schedules it, because the
    model's service must run again for the failed shard and Snakemake reruns every
    consumer of a service that runs; the job then takes the shard from the shard store
    without a request.) Outputs of other rules are removed as before.
    (tests/service/test_shard_write_failure.py checks this end to end.)"""
    from snakemake.jobs import Job
    from snakemake.logging import logger

    cleanup = getattr(Job, "cleanup", None)
    if cleanup is None or getattr(cleanup, "keeps_finished_shards", False):
        return

    async def cleanup_keeping_finished_shards(job, skip_outputs):
        if job.rule.name in SHARDS_WRITTEN_WHOLE:
            finished = [f for f in job.output if Path(f).is_file()]
            if finished:
                logger.warning(
                    f"affalign: kept the finished shard {', '.join(map(str, finished))} "
                    "of the failed group (written whole; a rerun takes it from the shard store)"
                )
            skip_outputs = set(skip_outputs) | set(job.output)
        await cleanup(job, skip_outputs)

    cleanup_keeping_finished_shards.keeps_finished_shards = True
    Job.cleanup = cleanup_keeping_finished_shards


def start_every_group_member_at_once() -> None:
    """Snakemake's local executor (also what runs a group inside its SLURM job) grows its
    thread pool to a group's member count and then submits the group's coordinator
    (Executor.run_group_job, which submits every member) to that same pool
    (snakemake/executors/local.py, Executor.run_job, checked on 9.27.1), so the coordinator
    holds a thread and the last consumer of every model waits for another to end: +28 %
    generation time with six shards. Grow the pool by a thread for every member and one for
    the coordinator before each group is submitted. Applied only where run_job still has that
    shape; elsewhere the run goes on unpatched with a warning."""
    import concurrent.futures
    import inspect

    from snakemake.executors import local
    from snakemake.logging import logger

    run_job = local.Executor.run_job
    if getattr(run_job, "starts_every_group_member", False):
        return
    try:
        source = inspect.getsource(run_job)
    except (OSError, TypeError):
        source = ""
    if "missing_workers = max(len(job) - self.workers, 0)" not in source:
        logger.warning(
            "affalign: this Snakemake's local executor is not the one the group-start fix "
            "was written for; consumers of a model may start one after another"
        )
        return

    def run_job_with_a_thread_per_member(self, job):
        if job.is_group():
            self.workers += len(job) + 1
            self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers)
        return run_job(self, job)

    run_job_with_a_thread_per_member.starts_every_group_member = True
    local.Executor.run_job = run_job_with_a_thread_per_member


def forget_records_of_stopped_services(service_files: Iterable[str]) -> None:
    """Before Snakemake decides what must run (DAG.init), drop its metadata record of each
    service file of ``service_files`` that does not exist, i.e. whose server is not running.
    A service file exists only while its server runs, yet Snakemake keeps the record of the
    params and command that made it; any change to them (an operational setting such as
    generation.server_start_timeout_s or runtime.python, or a new affalign) would mark the
    service as changed and rerun every shard and everything downstream. What a shard
    contains is decided by the shard rules' own params. Without the record Snakemake starts
    a server only when a shard must run (tests/test_workflow_e2e.py checks it)."""
    from snakemake.dag import DAG

    SERVICE_FILES[:] = service_files
    init = DAG.init
    if getattr(init, "forgets_stopped_services", False):
        return

    async def init_without_stopped_service_records(dag, *args, **kwargs):
        persistence = dag.workflow.persistence
        if persistence is not None:
            from snakemake.io import IOFile

            for service in SERVICE_FILES:
                if not Path(service).exists():
                    persistence.cleanup_metadata(IOFile(service))
        return await init(dag, *args, **kwargs)

    init_without_stopped_service_records.forgets_stopped_services = True
    DAG.init = init_without_stopped_service_records
