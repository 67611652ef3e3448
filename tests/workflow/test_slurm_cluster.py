"""The loopback SLURM cluster of the tests stops everything it started (root only)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import SESSION_MARKER
from processes import processes_with_environment
from slurm_cluster import CLUSTER_MARKER, LoopbackCluster, missing_requirements

pytestmark = pytest.mark.slow


def running(name: str) -> list[int]:
    """Pids of live processes called ``name`` (pgrep also lists zombies, which a daemon
    re-parented to init stays until init reaps it)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        command, state = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2]
        if command == name[:15] and state not in "ZX":
            pids.append(int(stat.parent.name))
    return sorted(pids)


def test_stopping_the_cluster_ends_its_daemons_munged_and_running_jobs(tmp_path):
    reason = missing_requirements()
    if reason:
        if os.environ.get("AFFALIGN_REQUIRE_SLURM") == "1":
            pytest.fail(f"a SLURM cluster is required here (AFFALIGN_REQUIRE_SLURM=1) but {reason}")
        pytest.skip(reason)
    munged_before = running("munged")
    cluster = LoopbackCluster(tmp_path / "slurm").start()
    try:
        ours = processes_with_environment(CLUSTER_MARKER, str(cluster.root))
        names = {command.split()[0].rsplit("/", 1)[-1] for command in ours.values()}
        assert {"slurmctld", "slurmd"} <= names, ours
        if not munged_before:  # started by the cluster, so it must stop with it
            assert "munged" in names, ours
        submitted = subprocess.run(
            ["sbatch", "--parsable", "--output", str(tmp_path / "job.out"), "--wrap", "sleep 600"],
            capture_output=True,
            text=True,
            env=cluster.env,
        )
        assert submitted.returncode == 0, submitted.stderr
        job = submitted.stdout.strip()
        cluster._wait(
            lambda: (
                subprocess.run(
                    ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, env=cluster.env
                ).stdout.strip()
                == "RUNNING"
            ),
            f"job {job}",
            60,
        )
    finally:
        cluster.stop()
    assert processes_with_environment(CLUSTER_MARKER, str(cluster.root)) == {}
    assert running("munged") == munged_before
    assert running("slurmstepd") == []
    session = processes_with_environment(SESSION_MARKER, os.environ[SESSION_MARKER])
    assert not [command for command in session.values() if "sleep 600" in command], session
