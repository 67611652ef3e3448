"""The shard consumer's requests and its checks on the model's service (no server needed)."""

import json
import subprocess
import sys

import pytest

from affalign.generate import RequestStyle, Sampling, ServiceUnavailable, _payload, wait_for_service
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
