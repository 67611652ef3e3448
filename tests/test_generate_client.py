"""The shard consumer's requests and its checks on the model's service (no server needed)."""

import json
import subprocess
import sys

import polars as pl
import pytest
from conftest import REPO

from affalign.generate import (
    RequestStyle,
    Sampling,
    ServiceUnavailable,
    _payload,
    service_problem,
    shard_key,
    wait_for_service,
    write_generation_shard,
)
from affalign.prompts import GenerationRequest

REQUEST = GenerationRequest(index=3, template_id="t-01", prompt="Write a tweet about masks.", seed=1234)
SAMPLING = Sampling(max_tokens=40, temperature=0.9, top_p=0.95)


def test_instruct_models_get_seeded_chat_requests_with_template_arguments():
    style = RequestStyle.of({"kind": "instruct", "chat_template_kwargs": {"enable_thinking": False}})
    endpoint, body = _payload(REQUEST, "m", style, SAMPLING)
    assert endpoint == "/v1/chat/completions"
    assert body["messages"] == [{"role": "user", "content": REQUEST.prompt}]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert (body["seed"], body["max_tokens"], body["temperature"], body["top_p"]) == (1234, 40, 0.9, 0.95)
    assert "stop" not in body


def test_base_models_get_completion_prompts_that_stop_at_a_newline():
    endpoint, body = _payload(REQUEST, "m", RequestStyle.of({"kind": "base"}), SAMPLING)
    assert endpoint == "/v1/completions"
    assert body["prompt"] == REQUEST.prompt and body["stop"] == ["\n"]


def test_chat_template_can_be_switched_off():
    style = RequestStyle.of({"kind": "instruct", "chat_template": False})
    endpoint, body = _payload(REQUEST, "m", style, SAMPLING)
    assert endpoint == "/v1/completions" and "stop" not in body


def test_consumer_fails_fast_when_the_service_reports_failure(tmp_path):
    service = tmp_path / "m.json"
    service.write_text(json.dumps({"status": "failed", "error": "CUDA out of memory", "pid": 1}))
    with pytest.raises(ServiceUnavailable, match=r"CUDA out of memory\nServer log: logs/m.server.log"):
        wait_for_service(service, "logs/m.server.log", timeout_s=30, poll_s=0.1)


def test_consumer_fails_fast_when_the_server_process_is_gone(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    service = tmp_path / "m.json"
    service.write_text(json.dumps({"status": "starting", "pid": int(finished.stdout)}))
    with pytest.raises(ServiceUnavailable, match=r"is gone; see its log logs/m.server.log"):
        wait_for_service(service, "logs/m.server.log", timeout_s=30, poll_s=0.1)


def test_consumer_fails_when_the_service_file_disappears(tmp_path):
    with pytest.raises(ServiceUnavailable, match="is gone: the model server stopped or failed"):
        wait_for_service(tmp_path / "missing.json", "logs/m.server.log", timeout_s=30, poll_s=0.1)


def test_consumer_gives_up_after_the_timeout(tmp_path):
    service = tmp_path / "m.json"
    service.write_text(json.dumps({"status": "starting"}))
    with pytest.raises(ServiceUnavailable, match="server_start_timeout_s"):
        wait_for_service(service, "logs/m.server.log", timeout_s=0.3, poll_s=0.1)


def test_a_withdrawn_or_dead_service_is_noticed(tmp_path):
    service_file = tmp_path / "m.json"
    ready = {"status": "ready", "url": "http://127.0.0.1:1", "pid": 1}
    service_file.write_text(json.dumps(ready))
    assert service_problem(service_file, ready) is None
    service_file.write_text(json.dumps({**ready, "status": "failed", "error": "engine died"}))
    assert "changed to 'failed': engine died" in service_problem(service_file, ready)
    service_file.unlink()
    assert "is gone" in service_problem(service_file, ready)


def test_finished_shards_are_taken_from_the_store_without_a_server(tmp_path):
    from affalign.prompts import ShardSpec
    from affalign.shards import write_shard

    shard = ShardSpec(1, "m", "instruct", "covid-19", "COVID-19", "masks", "masks", "default", 2)
    info = {"kind": "instruct", "model_source": "x"}
    prompts = REPO / "resources" / "prompts.yaml"
    store = tmp_path / "store"
    finished = pl.DataFrame({"post_id": ["a", "b"], "text": ["one", "two"]})
    write_shard(
        finished, store / f"{shard_key(shard, info, SAMPLING, prompts)}.parquet", {"stage": "generate"}
    )
    frame = write_generation_shard(
        shard,
        model_info=info,
        service_file=tmp_path / "no-service.json",
        server_log="logs/m.server.log",
        output=tmp_path / "out" / "default.parquet",
        prompts_file=prompts,
        sampling=SAMPLING,
        max_in_flight=1,
        server_start_timeout_s=1,
        request_timeout_s=1,
        store=store,
    )
    assert frame.equals(finished) and pl.read_parquet(tmp_path / "out" / "default.parquet").equals(finished)
    # Anything that changes the content changes the key.
    assert shard_key(shard, info, SAMPLING, prompts) != shard_key(
        shard, {**info, "dtype": "x"}, SAMPLING, prompts
    )
