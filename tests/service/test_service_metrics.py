"""How full the server was: vLLM's /metrics, sampled by the server wrapper, in the job account.

These use a stub /metrics endpoint and samples with known answers; the real vLLM CPU
server's session is in tests/service/test_service_server.py.
"""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from http_servers import StubEndpoint

from affalign.service.account import job_account
from affalign.service.metrics import (
    MetricsSampler,
    occupancy_figures,
    parse_metrics,
    read_samples,
    samples_file,
)

# As vLLM 0.32 writes them (one engine; the counter comes with its _created line).
EXPOSITION = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny"} 6.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny"} 3.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="tiny",reason="capacity"} 3.0
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="tiny"} 1234.0
vllm:generation_tokens_created{engine="0",model_name="tiny"} 1.7e+09
"""
SESSION = {"model": "m", "started_at": 1000.0, "pid": 42}


def test_the_metrics_are_read_from_prometheus_text_and_summed_over_engines():
    assert parse_metrics(EXPOSITION) == {"running": 6.0, "waiting": 3.0, "generation_tokens": 1234.0}
    second_engine = EXPOSITION.replace('engine="0"', 'engine="1"')
    assert parse_metrics(EXPOSITION + second_engine)["running"] == 12.0
    with pytest.raises(ValueError, match="vllm:num_requests_running"):
        parse_metrics(EXPOSITION.replace("vllm:num_requests_running{", "other{"))


def sample(t: float, running: float, tokens: float, waiting: float = 0.0) -> dict:
    return {**SESSION, "t": t, "running": running, "waiting": waiting, "generation_tokens": tokens}


def test_occupancy_known_truth():
    # max_num_seqs 8; samples every 2 s; the shards generate from 1010 to 1020.
    samples = [
        sample(1008.0, 0, 0),
        sample(1010.0, 8, 0, waiting=4),  # full 1010-1014
        sample(1012.0, 8, 400, waiting=4),
        sample(1014.0, 6, 800),  # 75 % 1014-1016
        sample(1016.0, 2, 1100),  # 25 % 1016-1020: the tail
        sample(1018.0, 2, 1200),
        sample(1020.0, 0, 1300),
    ]
    figures = occupancy_figures(samples, [(1010.0, 1020.0)], 8, 2.0)
    assert figures["occupancy"] == pytest.approx((4 * 1.0 + 2 * 0.75 + 4 * 0.25) / 10)
    assert figures["low_occupancy_s"] == pytest.approx(4.0)
    assert figures["mean_waiting"] == pytest.approx(4 * 4 / 10)
    assert figures["server_tokens_per_s"] == pytest.approx(1300 / 10)
    assert figures["metrics_samples"] == 7 and figures["metrics_missing"] == 0
    # Without max_num_seqs there is no occupancy, but the server's rate is still known.
    unknown = occupancy_figures(samples, [(1010.0, 1020.0)], None, 2.0)
    assert unknown["occupancy"] is None and unknown["low_occupancy_s"] is None
    assert unknown["server_tokens_per_s"] == pytest.approx(130.0)


def test_a_missing_sample_is_not_filled_in_by_its_neighbour():
    samples = [
        sample(1010.0, 8, 0),
        {**SESSION, "t": 1012.0, "error": "TimeoutError: timed out"},
        sample(1014.0, 4, 800),
    ]
    figures = occupancy_figures(samples, [(1010.0, 1016.0)], 8, 2.0)
    # 1010-1012 at 100 %, 1014-1016 at 50 %; 1012-1014 unknown.
    assert figures["occupancy"] == pytest.approx(0.75)
    assert figures["low_occupancy_s"] == pytest.approx(0.0)
    assert figures["metrics_missing"] == 1 and figures["metrics_samples"] == 2
    nothing = occupancy_figures([{**SESSION, "t": 1012.0, "error": "x"}], [(1010.0, 1016.0)], 8, 2.0)
    assert nothing["occupancy"] is None and nothing["server_tokens_per_s"] is None
    assert nothing["metrics_missing"] == 1


def metrics_stub(status: int = 200, body: str = EXPOSITION) -> StubEndpoint:
    async def handler(request: web.Request, seen) -> web.StreamResponse:
        return web.Response(status=status, text=body)

    return StubEndpoint(handler)


def test_the_sampler_records_samples_and_survives_a_failing_endpoint(tmp_path):
    path = samples_file(tmp_path / "m.server.log")
    assert path.name == "m.server.metrics.jsonl"
    with metrics_stub() as good, metrics_stub(status=500) as failing:
        sampler = MetricsSampler(good.url, path, SESSION, interval_s=60.0)
        sampler.poll()
        sampler.poll()  # not due again for a minute
        sampler.url = failing.url
        sampler.sample()
    sampler.url = "http://127.0.0.1:9"  # nothing listens there
    sampler.sample()
    with metrics_stub(body="# no vLLM here\n") as foreign:
        sampler.url = foreign.url
        sampler.sample()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 4 and all(line["model"] == "m" and line["pid"] == 42 for line in lines)
    assert lines[0]["running"] == 6.0 and lines[0]["generation_tokens"] == 1234.0
    assert ["error" in line for line in lines] == [False, True, True, True]
    assert "500" in lines[1]["error"] and "vllm:" in lines[3]["error"]
    summary = sampler.summary()
    assert summary["metrics_samples"] == 1 and summary["metrics_missing"] == 3
    assert summary["metrics_file"] == str(path) and "500" in summary["metrics_error"]
    # A samples file that cannot be written is counted, not raised.
    (tmp_path / "m.server.log").write_text("")
    with metrics_stub() as good:
        blocked = MetricsSampler(good.url, tmp_path / "m.server.log" / "x.jsonl", SESSION)
        blocked.sample()
    assert blocked.summary()["metrics_missing"] == 1 and "m.server.log" in blocked.summary()["metrics_error"]


def test_the_job_account_carries_the_occupancy_of_each_session(tmp_path):
    shards = [
        {"model": "m", "began_at": 1010.0, "ended_at": 1020.0, "requests": 10, "output_tokens": 1300,
         "server_started_at": 1000.0, "server_pid": 42},
    ]  # fmt: skip
    record = {**SESSION, "healthy_after_s": 5.0, "stopped_at": 1030.0, "max_num_seqs": 8,
              "metrics_interval_s": 2.0, "metrics_missing": 0}  # fmt: skip
    samples = [sample(1010.0, 8, 0), sample(1015.0, 2, 650), sample(1020.0, 0, 1300)]
    other_session = {**sample(1016.0, 8, 9999), "pid": 43}
    row = job_account(shards, [record], [*samples, other_session]).row(0, named=True)
    assert row["max_num_seqs"] == 8
    assert row["occupancy"] == pytest.approx(0.625)
    assert row["low_occupancy_s"] == pytest.approx(5.0)
    assert row["server_tokens_per_s"] == pytest.approx(130.0)
    assert row["metrics_samples"] == 3 and row["metrics_missing"] == 0
    # A session sampled for nothing (its /metrics failing throughout) says so.
    failed = {**record, "metrics_missing": 12, "metrics_file": str(tmp_path / "absent.jsonl")}
    row = job_account(shards, [failed]).row(0, named=True)
    assert row["occupancy"] is None and row["metrics_samples"] == 0 and row["metrics_missing"] == 12
    assert read_samples([tmp_path / "absent.jsonl"]) == []
