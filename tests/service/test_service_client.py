"""The service client's checks on the model's service (no server needed)."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from affalign.service import ServiceClient, ServiceUnavailable
from affalign.service.client import InFlightLimit, consumers_folder, in_flight_share, live_sibling_consumers

LIMITS = {"max_in_flight": 2, "request_timeout_s": 5}


def test_consumer_fails_fast_when_the_service_reports_failure(tmp_path):
    service = tmp_path / "m.json"
    service.write_text(json.dumps({"status": "failed", "error": "CUDA out of memory", "pid": 1}))
    with pytest.raises(ServiceUnavailable, match=r"CUDA out of memory\nServer log: logs/m.server.log"):
        ServiceClient(service, "logs/m.server.log", **LIMITS).wait(timeout_s=30, poll_s=0.1)


def test_consumer_fails_fast_when_the_server_process_is_gone(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    service = tmp_path / "m.json"
    service.write_text(json.dumps({"status": "starting", "pid": int(finished.stdout)}))
    with pytest.raises(ServiceUnavailable, match=r"is gone; see its log logs/m.server.log"):
        ServiceClient(service, "logs/m.server.log", **LIMITS).wait(timeout_s=30, poll_s=0.1)


def test_consumer_fails_when_the_service_file_disappears(tmp_path):
    with pytest.raises(ServiceUnavailable, match="is gone: the model server stopped or failed"):
        client = ServiceClient(tmp_path / "missing.json", "logs/m.server.log", **LIMITS)
        client.wait(timeout_s=30, poll_s=0.1)


def test_consumer_gives_up_after_the_timeout(tmp_path):
    service = tmp_path / "m.json"
    service.write_text(json.dumps({"status": "starting"}))
    with pytest.raises(ServiceUnavailable, match="server_start_timeout_s"):
        ServiceClient(service, "logs/m.server.log", **LIMITS).wait(timeout_s=0.3, poll_s=0.1)


def test_a_withdrawn_or_dead_service_is_noticed(tmp_path):
    service_file = tmp_path / "m.json"
    ready = {"status": "ready", "url": "http://127.0.0.1:1", "pid": 1}
    service_file.write_text(json.dumps(ready))
    client = ServiceClient(service_file, "logs/m.server.log", **LIMITS)
    client.service = ready
    assert client.problem() is None
    service_file.write_text(json.dumps({**ready, "status": "failed", "error": "engine died"}))
    assert "changed to 'failed': engine died" in client.problem()
    service_file.unlink()
    assert "is gone" in client.problem()


# A consumer that waits for a starting server (whose pid, the test's, is alive) until killed.
SIBLING = (
    "import sys; from affalign.service import ServiceClient; "
    "ServiceClient(sys.argv[1], 'logs/m.server.log', max_in_flight=1, request_timeout_s=5)"
    ".wait(timeout_s=600, poll_s=0.1)"
)


def test_a_failing_consumer_waits_for_its_running_siblings(tmp_path):
    service = tmp_path / "m.json"
    service.write_text(json.dumps({"status": "starting", "pid": os.getpid()}))
    sibling = subprocess.Popen([sys.executable, "-c", SIBLING, str(service)])
    try:
        folder = consumers_folder(service)
        while not any(folder.glob("*")):  # registered when it starts waiting
            assert sibling.poll() is None
            time.sleep(0.1)
        assert live_sibling_consumers(service) == [sibling.pid]
        client = ServiceClient(service, "logs/m.server.log", **LIMITS)
        waiting = threading.Thread(target=client.wait_for_siblings, kwargs={"poll_s": 0.1})
        waiting.start()
        waiting.join(timeout=1.0)
        assert waiting.is_alive()  # held while the sibling runs
    finally:
        sibling.kill()
        sibling.wait()
    waiting.join(timeout=60)
    assert not waiting.is_alive()
    # The dead sibling's registration stays until the server's job clears it; it is ignored.
    assert list(consumers_folder(service).glob("*")) and live_sibling_consumers(service) == []


def test_a_registration_whose_pid_was_reused_is_ignored(tmp_path):
    service = tmp_path / "m.json"
    folder = consumers_folder(service)
    folder.mkdir()
    # A live pid (this test's parent) with another start time: a consumer that ended, its pid reused.
    (folder / f"{socket.gethostname()}-{os.getppid()}").write_text(
        json.dumps({"pid": os.getppid(), "start": "1"})
    )
    assert live_sibling_consumers(service) == []


def test_consumers_share_the_servers_batch_and_the_last_one_gets_all_of_it(tmp_path):
    # Real sibling consumers (processes waiting on the service, as shard jobs do before ready).
    service = tmp_path / "m.json"
    service.write_text(json.dumps({"status": "starting", "pid": os.getpid()}))
    siblings = [subprocess.Popen([sys.executable, "-c", SIBLING, str(service)]) for _ in range(3)]
    try:
        while len(live_sibling_consumers(service)) < 3:
            assert all(s.poll() is None for s in siblings)
            time.sleep(0.1)
        client = ServiceClient(service, "logs/m.server.log", max_in_flight=16, request_timeout_s=5)
        client.service = {"engine_options": {"max_num_seqs": 64}}
        assert client.in_flight_limit() == 256  # the budget, 1,024 requests, over four consumers
        for sibling in siblings[:2]:
            sibling.kill()
            sibling.wait()
        assert client.in_flight_limit() == 512
    finally:
        for sibling in siblings:
            sibling.kill()
            sibling.wait()
    assert client.in_flight_limit() == 1024  # alone: the whole server's budget
    client.service = {"engine_options": {}}  # vLLM's default max_num_seqs: the fixed limit
    assert client.in_flight_limit() == 16


def test_in_flight_share_never_drops_below_one_request():
    assert in_flight_share(8, 2000, 16) == 1
    assert in_flight_share(8, 100, 16) == 11  # ceil(1,024 / 100)
    assert in_flight_share(None, 100, 16) == 16


def test_a_resized_limit_lets_waiting_requests_in_and_is_never_exceeded():
    import asyncio

    async def scenario() -> tuple[int, int, int]:
        limit = InFlightLimit(2)
        peak, done = 0, 0
        release = asyncio.Event()

        async def request() -> None:
            nonlocal peak, done
            async with limit:
                peak = max(peak, limit.active)
                await release.wait()
                done += 1

        tasks = [asyncio.ensure_future(request()) for _ in range(10)]
        await asyncio.sleep(0.05)
        before = limit.active  # two in flight, eight waiting
        await limit.resize(6)
        await asyncio.sleep(0.05)
        grown = limit.active
        release.set()
        await asyncio.gather(*tasks)
        return before, grown, peak if done == 10 else -1

    before, grown, peak = asyncio.run(scenario())
    assert (before, grown, peak) == (2, 6, 6)


def test_a_large_batch_gets_a_queue_a_quarter_above_it():
    # Above MIN_SERVER_BUDGET the batch decides: 1.25 x 2,048 over two consumers.
    assert in_flight_share(2048, 2, 16) == 1280
    assert in_flight_share(64, 1, 16) == 1024
