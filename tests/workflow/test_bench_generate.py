"""``make bench-generate`` leaves nothing behind: no process, no vLLM socket file.

vLLM's offline engine, which the benchmark stops with SIGKILL (its ``EngineCore`` ignores
SIGTERM), never removes the IPC sockets it made in the temporary folder; each path of the
benchmark runs with a private temporary folder that the benchmark removes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from conftest import REPO
from processes import processes_with_environment

sys.path.insert(0, str(REPO / "benchmarks"))

import bench_generate


@pytest.mark.slow
def test_the_offline_path_leaves_no_socket_in_the_temporary_folder(tiny_llama, tmp_path, monkeypatch):
    # The system temporary folder as the benchmark and its children see it (short: vLLM's
    # socket paths must fit in 107 bytes).
    system_temp = Path(tempfile.mkdtemp(prefix="affalign-t-", dir="/tmp"))
    try:
        monkeypatch.setenv("TMPDIR", str(system_temp))
        monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
        args = argparse.Namespace(shards=1, per_shard=4, max_tokens=4, max_in_flight=4, timeout=600)
        marker = uuid.uuid4().hex
        figures = bench_generate.measure("offline", args, tiny_llama, tmp_path, marker)
        assert figures["tokens"] > 0
        # The profile finds vLLM's worker, its engine process and the front end, each with CPU time.
        assert all(figures["cpu_s"][role] > 0 for role in ("worker", "engine", "front"))
        assert figures["tokenisation_s"] >= 0
        assert processes_with_environment(bench_generate.RUN_MARKER, marker) == {}
        assert sorted(path.name for path in system_temp.iterdir()) == []
    finally:
        shutil.rmtree(system_temp, ignore_errors=True)


def test_the_profile_predicts_the_ratio_from_cpu_per_token():
    # Service: 2,000 tokens for 4 CPU s (2 per 1,000); offline: 2,000 tokens for 3 CPU s (1.5).
    run = {
        "service": {
            "tokens": 2000,
            "seconds": 2.0,
            "cpu_s": {"worker": 2.0, "engine": 0.4, "api": 1.0, "wrapper": 0.1, "consumers": 0.5},
        },
        "offline": {
            "tokens": 2000,
            "seconds": 1.5,
            "cpu_s": {"worker": 2.0, "engine": 0.4, "front": 0.6},
            "tokenisation_s": 0.2,
        },
    }
    text = bench_generate.where_the_time_goes([run, run, run], cores=2)
    assert "ratio the CPU work predicts on 2 saturated cores: 0.750" in text
    assert "vLLM API server (HTTP, tokenisation, detokenisation) 0.500" in text
    assert "total 2.000" in text and "total 1.500" in text
    assert "tokenisation + detokenisation alone (one process, same tokenizer): 0.100" in text
    assert "kept 100% of 2 cores busy" in text
