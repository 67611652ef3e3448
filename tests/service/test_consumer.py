"""The one skeleton of a model's consumers (affalign.service.consumer): the command lines
the workflow's rules pass to the consumer jobs, and what run_shard does around a shard."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import polars as pl
import pytest
from aiohttp import web
from conftest import REPO
from http_servers import StubEndpoint, stub_service_options

from affalign.classify import llm_job
from affalign.generate import job as generate_job
from affalign.io import read_provenance
from affalign.opinions import job as opinions_job
from affalign.service import (
    ConsumerOptions,
    EndpointClient,
    FinishedShard,
    ServiceClient,
    ShardWork,
    run_shard,
)

# The flags as workflow/rules/{generate,opinions,classify}.smk write them, with common.smk's
# operational flags (get_consumer_operations, get_llm_classifier_operations).
OPERATIONS = "--max-in-flight 7 --server-start-timeout 900.0 --request-timeout 123"
ENDPOINT = {
    "base_url": "http://127.0.0.1:9/v1",
    "model": "provider/model-x",
    "api_key_env": "SOME_KEY",
    "request_budget": 1000,
    "max_concurrency": 8,
    "shard_jobs": 2,
    "request_timeout_s": 60,
    "logprobs": "auto",
}
WITH_ENDPOINT = f"{OPERATIONS} --endpoint {shlex.quote(json.dumps(ENDPOINT, sort_keys=True))}"
SETTINGS = "--settings '{\"seed\": 1}'"
COMMANDS = {
    "generate": (
        generate_job,
        f"--model m --issue covid-19 --topic masks --prompt-type default {SETTINGS} "
        "--prompts resources/prompts.yaml --service-file results/services/m.json "
        "--server-log logs/serve_model/m.server.log --store results/.shard-store/generated/m "
        f"--output out.parquet --log out.log {OPERATIONS}",
    ),
    "generate_endpoint": (
        generate_job,
        f"--model hosted --issue covid-19 --topic masks --prompt-type default {SETTINGS} "
        "--prompts resources/prompts.yaml --store results/.shard-store/generated/hosted "
        f"--output out.parquet --log out.log {WITH_ENDPOINT}",
    ),
    "opinion_shard": (
        opinions_job,
        f"--model m --survey economy --context default {SETTINGS} --questions q.csv "
        "--service-file results/services/m.json --server-log logs/serve_model/m.server.log "
        f"--store results/.shard-store/opinions/m --output out.parquet --log out.log {OPERATIONS}",
    ),
    "opinion_shard_endpoint": (
        opinions_job,
        f"--model hosted --survey economy --context default {SETTINGS} --questions q.csv "
        "--detected results/endpoints/hosted.json --store results/.shard-store/opinions/hosted "
        f"--output out.parquet --log out.log {WITH_ENDPOINT}",
    ),
    "classify_generated_llm": (
        llm_job,
        f"--classifier judge {SETTINGS} --generator m --inputs a.parquet b.parquet "
        "--outputs x.parquet y.parquet --service-file results/services/judge/j.json "
        "--server-log logs/serve_judge/j.server.log --store results/.shard-store/classify/judge "
        f"--log out.log {OPERATIONS}",
    ),
}


@pytest.mark.parametrize("rule", COMMANDS)
def test_the_rules_command_lines_give_the_consumer_options(rule):
    module, command = COMMANDS[rule]
    args = module.parser().parse_args(shlex.split(command))
    options = ConsumerOptions.from_args(args)
    assert (options.max_in_flight, options.server_start_timeout_s, options.request_timeout_s) == (7, 900, 123)
    assert str(options.store).startswith("results/.shard-store/")
    assert json.loads(args.settings) == {"seed": 1} and args.log == "out.log"
    if rule.endswith("_endpoint"):
        assert options.service_file is None and options.endpoint.served_model == "provider/model-x"
        client = options.client()
        # The endpoint's limits, not the flags', hold for its jobs.
        assert isinstance(client, EndpointClient) and client.max_in_flight == 4
    else:
        assert options.endpoint is None and str(options.service_file).startswith("results/services/")
        assert type(options.client()) is ServiceClient and options.client().max_in_flight == 7


def test_a_classifier_job_needs_its_service_file_and_a_shard_job_its_output(capsys):
    module, command = COMMANDS["classify_generated_llm"]
    args = shlex.split(command)
    at = args.index("--service-file")
    # An LLM judge is reached through its service file or as an endpoint: one of them.
    with pytest.raises(SystemExit):
        module.main(args[:at] + args[at + 2 :])
    assert "one of --service-file and --endpoint is required" in capsys.readouterr().err
    module, command = COMMANDS["generate"]
    args = shlex.split(command)
    at = args.index("--output")
    with pytest.raises(SystemExit):
        module.parser().parse_args(args[:at] + args[at + 2 :])
    assert "--output" in capsys.readouterr().err


def test_run_shard_asks_once_keeps_the_shard_and_takes_it_back_from_the_store(tmp_path, capsys):
    async def answer(request, seen):
        if request.path == "/health":
            return web.Response(text="ok")
        return web.json_response({"choices": [{"text": f"answer to {seen[-1].body['prompt']}"}]})

    def finish(body, client, timing):
        frame = pl.DataFrame({"text": [body["choices"][0]["text"]]})
        provenance = {"stage": "test", **timing.provenance(1)}
        return FinishedShard(frame, provenance, f"wrote one answer in {timing.wall:.1f} s")

    async def ask(client):
        return await client.post("/v1/completions", {"prompt": "p"}, "the request")

    async def never(client):
        raise AssertionError("a shard in the store is not asked again")

    with StubEndpoint(answer) as stub:
        options = stub_service_options(stub, tmp_path, max_in_flight=2, store=tmp_path / "store")
        frame = run_shard(options, "k1", ShardWork(ask, finish), tmp_path / "out" / "a.parquet")
        assert frame["text"].to_list() == ["answer to p"]
        assert [s.path for s in stub.seen if s.path != "/health"] == ["/v1/completions"]
        again = run_shard(options, "k1", ShardWork(never, finish), tmp_path / "out" / "b.parquet")
    assert again.equals(frame) and pl.read_parquet(tmp_path / "store" / "k1.parquet").equals(frame)
    provenance = read_provenance(tmp_path / "out" / "b.parquet")
    assert provenance["requests"] == 1 and provenance["ended_at"] >= provenance["began_at"] > 0
    out = capsys.readouterr().out
    assert "[affalign] wrote one answer in " in out
    assert f"[affalign] {tmp_path / 'out' / 'b.parquet'}: finished earlier, taken from" in out


@pytest.mark.parametrize("rule", ["generate", "opinion_shard", "classify_generated_llm"])
def test_a_consumer_without_aiohttp_stops_with_one_line_before_it_reads_anything(rule, tmp_path):
    # The HTTP client is imported only once a request is sent, so the job parses its command
    # line and start_job names the missing module. A stand-in that fails to import the way
    # a missing module does takes its place.
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / "aiohttp.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'aiohttp'\", name='aiohttp')\n"
    )
    module, command = COMMANDS[rule]
    log = tmp_path / "job.log"
    args = shlex.split(command.replace("--log out.log", f"--log {log}"))
    source = os.pathsep.join([str(tmp_path / "hidden"), str(REPO / "src")])
    run = subprocess.run(
        [sys.executable, "-m", module.__name__, *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=source),
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 1
    [line] = run.stderr.splitlines()
    assert line.startswith(f"affalign: the interpreter {sys.executable} has no module 'aiohttp' (")
    assert log.read_text().splitlines() == [f"[affalign] interpreter: {sys.executable}", line]
