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
        assert processes_with_environment(bench_generate.RUN_MARKER, marker) == {}
        assert sorted(path.name for path in system_temp.iterdir()) == []
    finally:
        shutil.rmtree(system_temp, ignore_errors=True)
