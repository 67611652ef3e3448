"""Model-side jobs (shard consumers, classification) run with the interpreter the workflow
chose (runtime.python), say which one in their log, stop with one line when it lacks a
module they need, and are not rerun when only how they run changes."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from conftest import REPO, job_counts, run_snakemake, stand_in_model, validated_config, write_config
from http_servers import StubEndpoint

from affalign import missing_module_message
from affalign.io import missing_module

ORCHESTRATION_PYTHON = REPO / ".venv-orchestration" / "bin" / "python"
KEY_VARIABLE = "AFFALIGN_TEST_ENDPOINT_KEY"
KEY = "sk-test-runtime-jobs-SECRET"
JOB_MODULES = ("affalign.generate.job", "affalign.opinions.job", "affalign.classify.job")


def job_commands(dry_run_output: str, module: str) -> list[list[str]]:
    """The argument vectors of every `exec <python> -m <module> ...` a dry run printed."""
    commands = []
    for line in dry_run_output.splitlines():
        if f" -m {module} " in line:
            words = shlex.split(line)
            commands.append(words[words.index("exec") + 1 :])
    return commands


def flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


def with_endpoint_and_transformer(workdir: Path, config: dict) -> dict:
    """The demo study plus an endpoint model and a transformer classifier (a stand-in folder:
    nothing is loaded in a dry run)."""
    config = json.loads(json.dumps(config))
    config["models"]["hosted"] = {
        "kind": "instruct",
        "endpoint": {
            "base_url": "http://127.0.0.1:9/v1",  # nothing listens: a dry run sends nothing
            "model": "provider/model-x",
            "api_key_env": KEY_VARIABLE,
            "request_budget": 100_000,
            "max_concurrency": 4,
            "shard_jobs": 2,
        },
    }
    config["classifiers"]["tiny-emotion"] = {
        "type": "hf",
        "model": str(stand_in_model(workdir / "classifier")),
        "labels": ["anger", "joy"],
    }
    return validated_config(config)


def test_consumer_and_transformer_jobs_run_with_runtime_python(study, tmp_path):
    workdir, config = study
    config = with_endpoint_and_transformer(workdir, config)
    runtime = tmp_path / "gpu-runtime" / "bin" / "python"
    runtime.parent.mkdir(parents=True)
    runtime.symlink_to(sys.executable)  # exists, as the pre-run check requires; never run
    config["runtime"] = {"python": str(runtime), "device": "cpu"}
    config["generation"].update(max_in_flight=7, request_timeout_s=123)
    dry = run_snakemake(
        workdir,
        "--dry-run",
        "--printshellcmds",
        configfile=write_config(workdir / "c.yaml", config),
        env={KEY_VARIABLE: KEY},
    )
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    counts = job_counts(dry.stdout)

    generation = job_commands(dry.stdout, "affalign.generate.job")
    opinions = job_commands(dry.stdout, "affalign.opinions.job")
    assert len(generation) == counts["generate"] + counts["generate_endpoint"]
    assert len(opinions) == counts["opinion_shard"] + counts["opinion_shard_endpoint"]
    for command in generation + opinions:
        assert command[:2] == [str(runtime), "-m"], command
        # Operational settings reach the job as flags, and an endpoint's settings only its own.
        assert flag(command, "--max-in-flight") == "7" and flag(command, "--request-timeout") == "123"
        endpoint = flag(command, "--endpoint")
        assert (endpoint is not None) == (flag(command, "--model") == "hosted"), command
        if endpoint:
            assert json.loads(endpoint)["max_concurrency"] == 4 and flag(command, "--service-file") is None
        else:
            assert flag(command, "--service-file").startswith("results/services/")
        settings = json.loads(flag(command, "--settings"))
        assert "seed" in settings or "logprobs" in settings
    assert KEY not in dry.stdout + dry.stderr

    # A transformer classifier runs in the model runtime; a lexicon, which needs no GPU, in
    # the environment running Snakemake (where the lexicon wheels are installed).
    classification = job_commands(dry.stdout, "affalign.classify.job")
    assert len(classification) == counts["classify_generated"] + counts["classify_human"]
    for command in classification:
        spec = json.loads(flag(command, "--spec"))
        expected = str(runtime) if spec["type"] == "hf" else sys.executable
        assert command[0] == expected, command
        assert command.count("--inputs") == 1 and "--outputs" in command
    assert {flag(command, "--classifier") for command in classification} == set(config["classifiers"])


def run_job(python: Path | str, module: str, *args: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [str(python), "-m", module, *args], capture_output=True, text=True, env=environment, timeout=300
    )


@pytest.mark.skipif(
    not ORCHESTRATION_PYTHON.exists(), reason="needs .venv-orchestration (make orchestration-env)"
)
def test_a_transformer_classifier_without_torch_stops_with_one_line(tmp_path):
    # A real second environment, built from locks/orchestration.txt: it has no torch.
    probe = run_job(ORCHESTRATION_PYTHON, "affalign.classify.job", "--help")
    assert probe.returncode == 0, probe.stderr
    log = tmp_path / "logs" / "classify.log"
    spec = {"type": "hf", "model": str(tmp_path / "never-loaded"), "labels": ["anger"]}
    result = run_job(
        ORCHESTRATION_PYTHON,
        "affalign.classify.job",
        "--classifier", "tiny-emotion",
        "--spec", json.dumps(spec),
        "--inputs", str(tmp_path / "posts.parquet"),
        "--outputs", str(tmp_path / "affect.parquet"),
        "--log", str(log),
    )  # fmt: skip
    assert result.returncode == 1
    expected = missing_module_message(
        "torch", "classifier tiny-emotion of type hf", str(ORCHESTRATION_PYTHON)
    )
    assert result.stderr.splitlines() == [expected], result.stderr
    assert log.read_text().splitlines() == [f"[affalign] interpreter: {ORCHESTRATION_PYTHON}", expected]
    assert "Traceback" not in result.stderr + log.read_text()
    assert not (tmp_path / "affect.parquet").exists()


def test_the_missing_module_named_is_the_one_python_could_not_find(tmp_path, monkeypatch):
    # An installed package whose own import fails: the missing dependency is named.
    (tmp_path / "wrapper_package").mkdir()
    (tmp_path / "wrapper_package" / "__init__.py").write_text("import affalign_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert missing_module(["json", "wrapper_package"]) == "affalign_no_such_dependency"
    assert missing_module(["affalign_no_such_module_at_all"]) == "affalign_no_such_module_at_all"
    assert missing_module(["json", "shlex"]) is None


# --- Operational settings rerun nothing --------------------------------------------------


def answer_generation(request_count: list[int]):
    async def handler(request: web.Request, seen) -> web.StreamResponse:
        if request.path.endswith("/models"):
            return web.json_response({"data": [{"id": "model-x"}]})
        request_count.append(1)
        return web.json_response(
            {
                "choices": [{"message": {"content": "masks again"}, "finish_reason": "stop"}],
                "usage": {"completion_tokens": 2},
            }
        )

    return handler


def test_operational_settings_rerun_nothing_and_content_settings_do(study, tmp_path):
    """A real shard job through an endpoint stub (no model needed): its log names the
    interpreter; concurrency, timeouts, the endpoint's limits and the interpreter are not
    part of the shard, so changing them reruns nothing, while the temperature does."""
    workdir, config = study
    requests: list[int] = []
    with StubEndpoint(answer_generation(requests)) as stub:
        config = with_endpoint_and_transformer(workdir, config)
        config["models"]["hosted"]["endpoint"]["base_url"] = f"{stub.url}/v1"
        config["generation"]["n_per_shard"] = 3
        target = "results/generated/hosted/covid-19/mask-mandates/default.parquet"

        def run(changed: dict, *args: str) -> subprocess.CompletedProcess:
            configfile = write_config(workdir / "study.yaml", changed)
            return run_snakemake(workdir, *args, "--", target, configfile=configfile, env={KEY_VARIABLE: KEY})

        first = run(config)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert len(requests) == 3
        log = workdir / "logs" / "generate" / "hosted" / "covid-19" / "mask-mandates" / "default.log"
        assert log.read_text().splitlines()[0] == f"[affalign] interpreter: {sys.executable}"

        operational = json.loads(json.dumps(config))
        operational["generation"].update(max_in_flight=1, request_timeout_s=5, server_start_timeout_s=9)
        operational["models"]["hosted"]["endpoint"].update(
            max_concurrency=1, shard_jobs=1, request_timeout_s=5, request_budget=50
        )
        runtime = tmp_path / "elsewhere" / "bin" / "python"
        runtime.parent.mkdir(parents=True)
        runtime.symlink_to(sys.executable)
        operational["runtime"] = {"python": str(runtime)}
        unchanged = run(operational, "--dry-run")
        assert unchanged.returncode == 0, unchanged.stdout[-3000:] + unchanged.stderr[-3000:]
        assert "Nothing to be done" in unchanged.stdout + unchanged.stderr, unchanged.stdout[-3000:]

        content = json.loads(json.dumps(config))
        content["generation"]["temperature"] = 0.5
        changed = run(content, "--dry-run")
        assert changed.returncode == 0, changed.stdout[-3000:] + changed.stderr[-3000:]
        assert job_counts(changed.stdout) == {"generate_endpoint": 1, "total": 1}, changed.stdout


# --- The model runtime needs no Snakemake -------------------------------------------------


def interpreter_without(tmp_path: Path, module: str) -> Path:
    """An interpreter for ``python -m MODULE ARGS`` in which ``module`` cannot be imported,
    as in an environment installed without it (the GPU runtime lock holds no Snakemake)."""
    wrapper = tmp_path / "runtime-without" / "python"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(
        f"#!{sys.executable}\n"
        "import runpy, sys\n"
        f"sys.modules[{module!r}] = None  # import {module} raises ModuleNotFoundError\n"
        "assert sys.argv[1] == '-m', sys.argv\n"
        "sys.argv = [sys.argv[2], *sys.argv[3:]]\n"
        "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    )
    wrapper.chmod(0o755)
    return wrapper


def test_model_side_jobs_run_in_a_runtime_without_snakemake(study, tmp_path):
    """The GPU runtime is installed from locks/gpu-runtime.txt, which holds no Snakemake
    (Snakemake's many dependencies only narrow what vLLM can be installed with): a shard
    job and a transformer classification job really run with an interpreter that cannot
    import it."""
    from tiny_models import build_tiny_bert_classifier

    runtime_lock = (REPO / "locks" / "gpu-runtime.txt").read_text()
    assert not [line for line in runtime_lock.splitlines() if line.lower().startswith("snakemake")]
    workdir, config = study
    requests: list[int] = []
    with StubEndpoint(answer_generation(requests)) as stub:
        config = with_endpoint_and_transformer(workdir, config)
        config["models"]["hosted"]["endpoint"]["base_url"] = f"{stub.url}/v1"
        config["classifiers"]["tiny-emotion"]["model"] = str(
            build_tiny_bert_classifier(tmp_path / "emotion", ["anger", "joy"])
        )
        config["generation"]["n_per_shard"] = 3
        runtime = interpreter_without(tmp_path, "snakemake")
        config["runtime"] = {"python": str(runtime)}
        shard = "hosted/covid-19/mask-mandates/default"
        # One classification job per model: every shard of the endpoint model is generated.
        target = f"results/classify/tiny-emotion/generated/{shard}.parquet"
        configfile = write_config(workdir / "study.yaml", config)
        result = run_snakemake(workdir, "--", target, configfile=configfile, env={KEY_VARIABLE: KEY})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    shards = list((workdir / "results" / "generated" / "hosted").rglob("*.parquet"))
    assert len(requests) == 3 * len(shards) and (workdir / target).is_file()
    for log in (f"logs/generate/{shard}.log", "logs/classify/tiny-emotion/generated/hosted.log"):
        assert (workdir / log).read_text().splitlines()[0] == f"[affalign] interpreter: {sys.executable}", log
    # The wrapper really hides Snakemake from the jobs it runs.
    probe = subprocess.run(
        [str(runtime), "-m", "snakemake", "--version"], capture_output=True, text=True, timeout=60
    )
    assert probe.returncode != 0 and "snakemake" in probe.stderr
