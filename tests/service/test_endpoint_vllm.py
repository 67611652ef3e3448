"""Endpoint models through a real vLLM CPU server that the test starts itself, outside
Snakemake, with ``--api-key`` (one server for the module; its whole session is stopped at
the end, SIGKILL after a grace period, since vLLM's EngineCore ignores SIGTERM).

The endpoint's shards must equal those of a model that the workflow serves itself from the
same weights (same prompts, seeds and engine flags), in both log-probability methods; a
wrong key fails at once, naming its variable, and no key reaches any file; a run over its
budget does not start (``test_endpoint.py``); the concurrency limit holds across parallel
shard jobs, measured on the server's side of the connection by a recording proxy.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl
import pytest
from conftest import demo_config, run_snakemake, validated_config, write_config
from http_servers import RecordingProxy
from polars.testing import assert_frame_equal
from tiny_models import tiny_engine

from affalign.io.parquet import read_provenance
from affalign.service.client import is_healthy
from affalign.service.server import (
    free_port,
    server_command,
    server_environment,
    short_temp_root,
)
from affalign.service.session import stop_session

pytestmark = pytest.mark.slow

KEY_VARIABLE = "AFFALIGN_TEST_ENDPOINT_KEY"
API_KEY = f"affalign-test-key-{uuid.uuid4().hex}"
SERVED_NAME = "tiny-hosted"
TOPICS = ["mask-mandates", "vaccines", "lockdowns"]
PROMPT_TYPES = ["default", "liberal", "conservative"]
SURVEYS = ["science", "economy"]
CONTEXTS = ["default", "qa-liberal", "qa-conservative"]
# Survey prompts with a steering context: up to ~360 tokens.
ENGINE = tiny_engine(max_model_len=512)


def study(models: dict, topics: list[str] = TOPICS[:1], n_per_shard: int = 6, max_tokens: int = 8) -> dict:
    config = demo_config()
    config["models"] = models
    covid = config["issues"]["covid-19"]
    covid["topics"] = {topic: covid["topics"][topic] for topic in topics}
    config["issues"] = {"covid-19": covid}
    config["human"] = {"covid-19": config["human"]["covid-19"]}
    config["generation"].update(n_per_shard=n_per_shard, max_tokens=max_tokens, max_in_flight=4)
    config["opinions"]["contexts"] = ["default", "qa"]
    return config


def served(model_dir: Path) -> dict:
    return {"path": str(model_dir), "kind": "instruct", "engine": ENGINE}


def endpoint(url: str, **changes) -> dict:
    entry = {
        "base_url": f"{url}/v1",
        "model": SERVED_NAME,
        "api_key_env": KEY_VARIABLE,
        "request_budget": 10_000,
    }
    return {"kind": "instruct", "endpoint": {**entry, **changes}}


def generation_targets(model: str, topics: list[str] = TOPICS[:1]) -> list[str]:
    return [f"results/generated/{model}/covid-19/{t}/{p}.parquet" for t in topics for p in PROMPT_TYPES]


def opinion_targets(model: str) -> list[str]:
    return [f"results/opinions/{model}/{s}/{c}.parquet" for s in SURVEYS for c in CONTEXTS]


def run(workdir: Path, config: dict, targets: list[str], *args: str, key: str | None = API_KEY):
    configfile = write_config(workdir / "study.yaml", config)
    env = {KEY_VARIABLE: key} if key is not None else {}
    return run_snakemake(workdir, *args, "--", *targets, configfile=configfile, env=env, timeout=1200)


def files_holding(root: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [str(path) for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


class EndpointServer:
    """vLLM's OpenAI-compatible server for the tiny model with an API key, flags as the
    workflow's serve_model job would give them (same engine options and seed)."""

    def __init__(self, model_dir: Path, folder: Path) -> None:
        config = validated_config(study({"tiny": served(model_dir)}))
        engine = config["models"]["tiny"]["engine"]
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = server_command(str(model_dir), SERVED_NAME, port, engine, seed=config["seed"])
        self.scratch = Path(tempfile.mkdtemp(prefix="affalign-ep-", dir=short_temp_root()))
        # Outside every workflow folder: vLLM writes its arguments, the key among them, here.
        self.log = folder / "endpoint-server.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [*command, "--api-key", API_KEY],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_environment(self.scratch, engine),
                start_new_session=True,
            )

    def wait_until_healthy(self, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while not is_healthy(self.url):
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(1)

    def stop(self) -> None:
        """SIGTERM to the server's whole session, SIGKILL for what is left after 10 s."""
        stop_session(self.process.pid, self.process, grace_s=10)
        shutil.rmtree(self.scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory):
    endpoint_server = EndpointServer(tiny_llama, tmp_path_factory.mktemp("endpoint-server"))
    try:
        endpoint_server.wait_until_healthy()
        yield endpoint_server
    finally:
        endpoint_server.stop()


@pytest.fixture(scope="module")
def served_runs(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same model served by the workflow itself: generation and opinions (exact), and
    opinions again in top-k mode."""
    workdirs = {}
    for mode in ("exact", "top-k"):
        workdir = tmp_path_factory.mktemp(f"served-{mode}")
        config = study({"tiny": served(tiny_llama)})
        config["opinions"]["logprobs"] = mode
        targets = opinion_targets("tiny") + (generation_targets("tiny") if mode == "exact" else [])
        result = run(workdir, config, targets, key=None)
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-8000:]
        workdirs[mode] = workdir
    return workdirs


@pytest.fixture(scope="module")
def endpoint_run(server: EndpointServer, tmp_path_factory: pytest.TempPathFactory):
    """The endpoint as two models: log-probabilities detected (auto) and top-k configured."""
    workdir = tmp_path_factory.mktemp("endpoint")
    config = study({"tiny": endpoint(server.url), "tiny-topk": endpoint(server.url, logprobs="top-k")})
    targets = generation_targets("tiny") + opinion_targets("tiny") + opinion_targets("tiny-topk")
    result = run(workdir, config, targets)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-8000:]
    return workdir, config, targets, result


def test_endpoint_shards_equal_the_served_model_shards(served_runs, endpoint_run):
    workdir, _, _, result = endpoint_run
    assert "rule serve_model" not in result.stdout + result.stderr
    for target in generation_targets("tiny"):
        assert_frame_equal(pl.read_parquet(workdir / target), pl.read_parquet(served_runs["exact"] / target))
    for target in opinion_targets("tiny"):
        assert_frame_equal(
            pl.read_parquet(workdir / target),
            pl.read_parquet(served_runs["exact"] / target),
            check_exact=False,
            rel_tol=1e-4,
            abs_tol=1e-6,
        )
    for target in opinion_targets("tiny"):
        topk = pl.read_parquet(workdir / target.replace("/tiny/", "/tiny-topk/"))
        assert_frame_equal(
            topk.with_columns(model=pl.lit("tiny")),
            pl.read_parquet(served_runs["top-k"] / target),
            check_exact=False,
            rel_tol=1e-4,
            abs_tol=1e-6,
        )


def test_provenance_records_the_endpoint_the_method_and_never_the_key(server, endpoint_run):
    workdir, _, _, _ = endpoint_run
    host = server.url
    generated = read_provenance(workdir / generation_targets("tiny")[0])
    assert generated["model_source"] == f"endpoint {host}"
    assert generated["endpoint"]["host"] == host and generated["endpoint"]["reported_model_id"] == SERVED_NAME
    assert generated["endpoint"]["system_fingerprints"][0].startswith("vllm-")
    detected = read_provenance(workdir / opinion_targets("tiny")[0])["scoring"]
    assert (detected["mode"], detected["mode_chosen_by"]) == ("exact", "detection before the run")
    configured = read_provenance(workdir / opinion_targets("tiny-topk")[0])["scoring"]
    assert (configured["mode"], configured["top_logprobs"], configured["mode_chosen_by"]) == (
        "top-k",
        20,
        "configuration",
    )
    assert '"method": "exact"' in (workdir / "results" / "endpoints" / "tiny.json").read_text()
    assert files_holding(workdir, API_KEY) == []


def test_endpoint_shards_are_kept_in_the_shard_store(endpoint_run):
    workdir, config, targets, _ = endpoint_run
    store = workdir / "results" / ".shard-store" / "generated" / "tiny"
    assert len(list(store.glob("*.parquet"))) == len(PROMPT_TYPES)
    lost = workdir / generation_targets("tiny")[0]
    kept = pl.read_parquet(lost)
    lost.unlink()
    result = run(workdir, config, targets)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-8000:]
    assert (
        "finished earlier, taken from"
        in (workdir / "logs" / "generate" / "tiny" / "covid-19")
        .joinpath(f"{TOPICS[0]}/default.log")
        .read_text()
    )
    assert_frame_equal(pl.read_parquet(lost), kept)


def test_a_wrong_key_fails_at_once_naming_the_variable(server, tmp_path):
    wrong_key = f"wrong-key-{uuid.uuid4().hex}"
    with RecordingProxy(server.url) as proxy:
        result = run(
            tmp_path, study({"tiny": endpoint(proxy.url)}), generation_targets("tiny")[:1], key=wrong_key
        )
        seen = list(proxy.seen)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    log = (tmp_path / "logs" / "generate" / "tiny" / "covid-19" / TOPICS[0] / "default.log").read_text()
    assert f"HTTP 401: the API key in the environment variable {KEY_VARIABLE} was refused" in log, log
    assert [(s.method, s.path) for s in seen] == [("GET", "/v1/models")]  # no retries, no generation
    assert files_holding(tmp_path, wrong_key) == [] and wrong_key not in output
    assert files_holding(tmp_path, API_KEY) == []


def test_the_concurrency_limit_holds_across_parallel_shard_jobs(server, tmp_path):
    # 9 shards, each job keeping 2 requests in flight: with 8 cores Snakemake would run 8 of
    # them at once (16 requests); the endpoint allows 4, i.e. two jobs at once.
    limits = {"max_concurrency": 4, "shard_jobs": 2}
    targets = generation_targets("tiny", TOPICS)
    peaks = {}
    # The proxy holds the first requests until one more than a single job's share is in
    # flight: two jobs then overlap whenever the limit lets them, however slowly each starts.
    runs = (
        ("limited", (), limits["max_concurrency"]),
        ("unlimited", ("--resources", "endpoint_tiny=100"), limits["max_concurrency"] + 1),
    )
    for name, extra, hold_until in runs:
        workdir = tmp_path / name
        workdir.mkdir()
        with RecordingProxy(server.url, hold_until_in_flight=hold_until, hold_timeout_s=60) as proxy:
            config = study({"tiny": endpoint(proxy.url, **limits)}, TOPICS, n_per_shard=24, max_tokens=24)
            result = run(workdir, config, targets, "--cores", "8", *extra)
            peaks[name] = proxy.peak
            assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-8000:]
            assert proxy.generation_requests() == len(targets) * 24
    print(f"[endpoint concurrency] peak requests in flight at the server: {peaks}")
    assert peaks["limited"] <= limits["max_concurrency"]
    # Two jobs did overlap (each holds at most 2): the limit was reached, not just never tested.
    assert peaks["limited"] > limits["max_concurrency"] // limits["shard_jobs"]
    # The control: --resources overrides the endpoint's total, and then more are in flight.
    assert peaks["unlimited"] > limits["max_concurrency"]


ROUNDS_TO_PROVOKE = 5


def test_a_top_k_answer_batched_with_exact_requests_is_asked_again_until_sound(server):
    # vLLM 0.32's V1 sampler gives the top-k rows of a batch that also holds a
    # logprob_token_ids request probability 0 (-9999.0; vllm-project/vllm pull request
    # 51789): provoked here for real by sending both kinds to the real server at once.
    import asyncio

    import aiohttp

    from affalign.opinions.client import Scoring, answer_logprobs, answer_with_a_sound_top_k
    from affalign.opinions.positional import is_corrupted_top_k

    prompt = "Question: Is the sky blue?\nA. Yes\nB. No\nAnswer:"
    base = {"model": SERVED_NAME, "prompt": prompt, "max_tokens": 1, "temperature": 0.0}
    top_k = {**base, "logprobs": 20}
    exact = {**base, "logprobs": 1, "logprob_token_ids": [5, 6], "return_tokens_as_token_ids": True}

    async def main():
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with aiohttp.ClientSession(headers=headers) as session:

            class Poster:
                """The one method of a ServiceClient that answer_with_a_sound_top_k uses."""

                async def post(self, endpoint: str, body: dict, what: str) -> dict:
                    async with session.post(server.url + endpoint, json=body) as response:
                        response.raise_for_status()
                        return await response.json()

            client = Poster()
            alone = answer_logprobs(await client.post("/v1/completions", top_k, "alone"), chat=False)
            # Whether both kinds land in one scheduler step depends on timing (CI once saw a
            # round of 8 with none): a few rounds, until one is corrupted.
            corrupted = 0
            for _ in range(ROUNDS_TO_PROVOKE):
                mixed = await asyncio.gather(
                    *(client.post("/v1/completions", b, "") for b in [exact, top_k] * 8)
                )
                corrupted = sum(is_corrupted_top_k(answer_logprobs(a, chat=False)) for a in mixed[1::2])
                if corrupted:
                    break
            asked, *_ = await asyncio.gather(
                answer_with_a_sound_top_k(client, "/v1/completions", top_k, "q", Scoring("top-k", 20)),
                *(client.post("/v1/completions", exact, "") for _ in range(8)),
            )
            return alone, corrupted, asked

    alone, corrupted, asked = asyncio.run(main())
    assert corrupted >= 1, (
        f"no corrupted top-k answer in {ROUNDS_TO_PROVOKE} rounds: vLLM fixed it? then the retry may go"
    )
    assert not is_corrupted_top_k(asked) and asked.keys() == alone.keys()
    assert list(asked.values()) == pytest.approx(list(alone.values()), abs=1e-4)


def test_an_endpoint_judges_the_human_posts_of_an_issue_through_the_workflow(server, tmp_path):
    # classifiers.<c>.model an endpoint model: no serve_judge; the classification job calls
    # the endpoint with its key, and the pre-flight counts one request per post.
    labels = {"anger": "the writer is angry or outraged", "joy": "the writer is happy or glad"}
    prompt = tmp_path / "prompt.txt"
    # The tiny model's vocabulary is about a token per character: short answers, short prompt.
    prompt.write_text("Labels:\n{labels}\nPost: {post}\nJSON:")
    config = study({"tiny": endpoint(server.url)})
    config["classifiers"] = {
        "judge": {"type": "llm", "model": "tiny", "labels": labels, "prompt": str(prompt), "max_tokens": 48}
    }
    target = "results/classify/judge/human/covid-19.parquet"
    result = run(tmp_path, config, [target])
    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-8000:]
    assert "rule classify_human_llm_endpoint:" in output and "serve_judge" not in output
    assert "serve_model" not in output
    # Posts are ingested in the same run: the budget counts every row of the input table.
    raw = pl.read_csv(config["human"]["covid-19"]["path"], infer_schema=False).height
    assert f"affalign: endpoint model tiny: {raw} requests planned" in output, output[-5000:]
    frame = pl.read_parquet(tmp_path / target)
    assert sorted(frame.columns) == sorted(["post_id", *(f"{p}_{label}" for label in labels for p in "py")])
    assert all(frame[f"y_{label}"].dtype == pl.Boolean for label in labels)
    assert set(frame[[f"p_{label}" for label in labels]].unpivot()["value"]) <= {0.0, 1.0}
    posts = pl.read_parquet(tmp_path / "results/human/covid-19/posts.parquet")
    info = read_provenance(tmp_path / target)
    assert frame.height + info["unparsed"] == posts.height and set(frame["post_id"]) <= set(posts["post_id"])
    assert info["unparsed"] == 0 and posts.height > 20, info
    print(f"[endpoint judge] {posts.height} posts, {info['wall_s']} s, {info['posts_per_s']} posts/s")
    assert info["requests"] == posts.height + info["retries"]
    # Provenance names the endpoint (its host and served name; the model it reported).
    assert info["judge_model"] == "tiny" and info["model_source"] == f"endpoint {server.url}"
    assert info["endpoint"]["host"] == server.url and info["endpoint"]["served_model"] == SERVED_NAME
    assert info["endpoint"]["reported_model_id"] == SERVED_NAME
    assert info["classifier_spec"]["endpoint"] == {"base_url": f"{server.url}/v1", "model": SERVED_NAME}
    assert info["classifier_source"] == f"endpoint {SERVED_NAME} at {server.url}/v1"
    assert info["judge_is_generator"] is False
    assert len(list((tmp_path / "results/.shard-store/classify/judge").glob("*.parquet"))) == 1
    assert files_holding(tmp_path, API_KEY) == [] and API_KEY not in output
