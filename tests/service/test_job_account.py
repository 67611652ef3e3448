"""The job account: load, generation, idle tail and allocation share per server session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import polars as pl
import pytest

from affalign.io import write_table
from affalign.service.account import (
    append_session,
    await_sessions,
    job_account,
    read_sessions,
    session_record,
    union_length,
    write_job_account,
)


def covered_cells(intervals: list[tuple[int, int]]) -> int:
    """Oracle: unit cells covered by integer intervals."""
    cells = set()
    for start, end in intervals:
        cells.update(range(start, end))
    return len(cells)


def test_union_length_counts_overlaps_once():
    rng = np.random.default_rng(3)
    for _ in range(200):
        starts = rng.integers(0, 100, size=rng.integers(1, 12))
        intervals = [(int(s), int(s + rng.integers(0, 30))) for s in starts]
        assert union_length(intervals) == covered_cells(intervals)
    assert union_length([]) == 0.0


def shard(model, began, ended, tokens, started=1000.0, pid=7, healthy=20.0, requests=4):
    return {
        "model": model,
        "began_at": began,
        "ended_at": ended,
        "output_tokens": tokens,
        "requests": requests,
        "server_started_at": started,
        "server_pid": pid,
        "server_healthy_after_s": healthy,
    }


def test_one_session_known_truth():
    # Server starts at 1000, healthy at 1020; shards 1020-1050 and 1030-1060 (overlap) and
    # 1070-1080; the server stops at 1090: generation 50 s, idle tail 10 s, allocation 90 s.
    shards = [
        shard("m", 1020.0, 1050.0, 300),
        shard("m", 1030.0, 1060.0, 200),
        shard("m", 1070.0, 1080.0, 100),
    ]
    sessions = [
        {"model": "m", "started_at": 1000.0, "pid": 7, "healthy_after_s": 20.0, "stopped_at": 1090.0},
    ]
    row = job_account(shards, sessions).row(0, named=True)
    assert row["session"] == 1
    assert row["shards"] == 3 and row["requests"] == 12 and row["output_tokens"] == 600
    assert row["load_s"] == 20.0
    assert row["generation_s"] == pytest.approx(50.0)
    assert row["tokens_per_s"] == pytest.approx(12.0)
    assert row["idle_tail_s"] == pytest.approx(10.0)
    assert row["allocation_s"] == pytest.approx(90.0)
    assert row["generating_share"] == pytest.approx(50.0 / 90.0, abs=1e-6)
    assert row["server_started_at"] == "1970-01-01T00:16:40Z"


def test_sessions_are_told_apart_and_restored_shards_count_for_their_own_session():
    # Session 1 generated two shards and was killed (no stop record); session 2 restored
    # them from the store (their provenance still names session 1) and generated one more.
    first = [shard("m", 1020.0, 1030.0, 10), shard("m", 1025.0, 1040.0, 10)]
    second = [shard("m", 5030.0, 5040.0, 50, started=5000.0, pid=9, healthy=30.0)]
    sessions = [{"model": "m", "started_at": 5000.0, "pid": 9, "healthy_after_s": 30.0, "stopped_at": 5100.0}]
    account = job_account(first + second, sessions)
    assert account["session"].to_list() == [1, 2]
    killed, rerun = account.rows(named=True)
    assert killed["shards"] == 2 and killed["generation_s"] == pytest.approx(20.0)
    assert (
        killed["idle_tail_s"] is None
        and killed["allocation_s"] is None
        and killed["generating_share"] is None
    )
    assert killed["load_s"] == 20.0  # from the shards' provenance when the stop record is missing
    assert rerun["shards"] == 1 and rerun["idle_tail_s"] == pytest.approx(60.0)
    assert rerun["generating_share"] == pytest.approx(10.0 / 100.0)


def test_allocation_starts_with_the_slurm_job_when_known():
    record = session_record(
        model="m",
        started_at=1000.0,
        healthy_after_s=20.0,
        stopped_at=1100.0,
        pid=7,
        status="stopped",
        environ={"SLURM_JOB_ID": "42", "SLURM_JOB_START_TIME": "900", "CUDA_VISIBLE_DEVICES": "0,1"},
    )
    row = job_account([shard("m", 1020.0, 1070.0, 5)], [record]).row(0, named=True)
    assert row["allocation_s"] == pytest.approx(200.0)
    assert row["generating_share"] == pytest.approx(0.25)
    assert (row["slurm_job_id"], row["gpus"]) == ("42", "0,1")


def test_endpoint_model_has_generation_columns_only():
    endpoint = {"model": "hosted", "began_at": 10.0, "ended_at": 40.0, "output_tokens": 90, "requests": 3}
    row = job_account([endpoint], []).row(0, named=True)
    assert row["session"] is None and row["load_s"] is None and row["idle_tail_s"] is None
    assert row["generation_s"] == 30.0 and row["tokens_per_s"] == 3.0


def test_sessions_file_round_trip_skips_a_torn_line(tmp_path):
    path = tmp_path / "m.sessions.jsonl"
    append_session(path, {"model": "m", "started_at": 1.0})
    append_session(path, {"model": "m", "started_at": 2.0})
    with open(path, "a") as stream:
        stream.write('{"model": "m", "sta')  # a server killed mid-write
    assert [r["started_at"] for r in read_sessions([path, tmp_path / "missing.jsonl"])] == [1.0, 2.0]


def test_write_job_account_reads_shard_provenance(tmp_path):
    frame = pl.DataFrame({"x": [1]})
    paths = []
    for i, (began, ended) in enumerate([(1020.0, 1040.0), (1030.0, 1050.0)]):
        path = tmp_path / f"shard{i}.parquet"
        write_table(frame, path, shard("m", began, ended, 7))
        paths.append(path)
    sessions = tmp_path / "m.sessions.jsonl"
    append_session(
        sessions,
        {"model": "m", "started_at": 1000.0, "pid": 7, "healthy_after_s": 20.0, "stopped_at": 1060.0},
    )
    account = write_job_account(paths, [sessions], tmp_path / "a.parquet", tmp_path / "a.csv")
    assert pl.read_csv(tmp_path / "a.csv").height == 1
    assert account["generation_s"][0] == pytest.approx(30.0)
    assert account["output_tokens"][0] == 14


def test_the_account_waits_for_a_local_server_that_is_still_stopping(tmp_path):
    # A real process stands for the server; like the wrapper, a thread appends the
    # session's record once that process has ended.
    server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    sessions = tmp_path / "m.sessions.jsonl"

    def wrapper():
        server.wait()
        append_session(
            sessions, {"model": "m", "started_at": 1000.0, "pid": server.pid, "stopped_at": 1090.0}
        )

    threading.Thread(target=wrapper).start()
    local = {**shard("m", 1020.0, 1050.0, 3, pid=server.pid), "server_host": socket.gethostname()}
    found = await_sessions([local], [sessions], timeout_s=60)
    assert [s["pid"] for s in found] == [server.pid]
    assert job_account([local], found)["idle_tail_s"][0] == pytest.approx(40.0)


def test_servers_of_other_hosts_are_not_waited_for(tmp_path):
    # This test's own pid is alive, but on another host it is another process.
    remote = {**shard("m", 1020.0, 1050.0, 3, pid=os.getpid()), "server_host": "gpu-node-17"}
    began = time.monotonic()
    assert await_sessions([remote], [tmp_path / "none.jsonl"], timeout_s=30) == []
    assert time.monotonic() - began < 25
