"""Shared fixtures: the repository, Snakemake as a subprocess, tiny real models."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
# Named scenarios a newcomer can run (.test/<name>/config.yaml); paths in them are relative
# to the repository root. "demo" is config/demo.yaml.
SCENARIOS = REPO / ".test"


def run_snakemake(
    workdir: Path,
    *args: str,
    configfile: Path | None = None,
    timeout: int = 1800,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run the workflow as ``make demo`` does: the command line and the local profile
    (``env``: variables to set on top of this process's environment)."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--workflow-profile",
        str(REPO / "profiles" / "local"),
        *(["--configfile", str(configfile)] if configfile is not None else []),
        *args,
    ]
    # Shell rules call `python`: make it this environment's interpreter.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    environment = dict(os.environ, PYTHONUNBUFFERED="1", PATH=path, **(env or {}))
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=environment, cwd=workdir
    )


def run_affalign(*arguments: str) -> subprocess.CompletedProcess:
    """The ``affalign`` command of this checkout, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "affalign.config.cli", *arguments],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
    )  # fmt: skip


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run, as rule -> count."""
    counts: dict[str, int] = {}
    in_table = False
    for line in output.splitlines():
        if line.startswith("Job stats:"):
            in_table = True
            continue
        fields = line.split()
        if in_table and len(fields) == 2 and fields[1].isdigit():
            counts[fields[0]] = int(fields[1])
        elif in_table and line.strip() == "" and counts:
            break
    return counts


def validated_config(config: dict) -> dict:
    """A copy of ``config`` as the workflow reads it: schema-checked, every default filled in.

    Snakemake's ``validate`` fills defaults in place and hands one default object to every
    section that lacks the key; the JSON round trips keep the caller's config untouched and
    give each section its own copy.
    """
    config = json.loads(json.dumps(config))
    validate(config, str(SCHEMA), set_default=True)
    return json.loads(json.dumps(config))


def scenario_names() -> list[str]:
    return sorted(path.parent.name for path in SCENARIOS.glob("*/config.yaml"))


def scenario_config(name: str) -> dict:
    """A .test scenario's config, validated, with every path made absolute (so that it runs
    in any working folder), ready to be edited by a test."""
    config = validated_config(yaml.safe_load((SCENARIOS / name / "config.yaml").read_text()))

    def absolute(path: str) -> str:
        return str(REPO / path)

    config["prompts"] = absolute(config["prompts"])
    for model in config["models"].values():
        if "path" in model:
            model["path"] = absolute(model["path"])
    for table in config["human"].values():
        table["path"] = absolute(table["path"])
    for classifier in config["classifiers"].values():
        for key in ("gold", "prompt"):
            if key in classifier:
                classifier[key] = absolute(classifier[key])
    if "domain_table" in config["ideology"]:
        config["ideology"]["domain_table"] = absolute(config["ideology"]["domain_table"])
    for survey in config.get("opinions", {}).get("surveys", {}).values():
        survey["questions"] = absolute(survey["questions"])
        survey["answers"] = absolute(survey["answers"])
    return config


def demo_config() -> dict:
    """The demo study (.test/demo, which is config/demo.yaml); see :func:`scenario_config`."""
    return scenario_config("demo")


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(copy.deepcopy(config), sort_keys=False))
    return path


def stand_in_model(folder: Path) -> Path:
    """A local model folder that passes the checks before any job (a config.json and a
    weights file, neither loadable); for tests whose jobs never load a model."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}\n")
    (folder / "model.safetensors").write_bytes(b"stand-in weights, never loaded\n")
    return folder


def scenario_study(workdir: Path, name: str) -> tuple[Path, dict]:
    """A working folder and a scenario's config whose model paths point at a stand-in."""
    config = scenario_config(name)
    model_dir = stand_in_model(workdir / "model")
    for model in config["models"].values():
        model["path"] = str(model_dir)
    return workdir, config


@pytest.fixture()
def study(tmp_path: Path) -> tuple[Path, dict]:
    """A working folder and the demo config (see :func:`scenario_study`)."""
    return scenario_study(tmp_path, "demo")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised Llama causal LM with its own trained tokenizer and chat template."""
    from tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


# Every process the suite starts inherits this variable (servers, their engines, guards,
# SLURM and munge daemons): at the end of the session none of them may still run.
SESSION_MARKER = "AFFALIGN_TEST_SESSION"
LEFTOVER_WAIT_S = 90.0  # a server's guard gives it 30 s after SIGTERM, then uses SIGKILL


def pytest_configure(config: pytest.Config) -> None:
    import uuid

    os.environ.setdefault(SESSION_MARKER, uuid.uuid4().hex)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running():
    """Fail the session if any process the suite started outlives it (and stop those)."""
    from processes import wait_until_gone

    yield
    marker = os.environ[SESSION_MARKER]
    left = wait_until_gone(SESSION_MARKER, marker, LEFTOVER_WAIT_S)
    if left:
        from processes import stop_marked_processes

        stop_marked_processes(SESSION_MARKER, marker, grace_s=5.0)
        listing = "\n".join(f"  {pid}: {command[:200]}" for pid, command in sorted(left.items()))
        pytest.fail(
            f"{len(left)} processes started by the test suite still ran {LEFTOVER_WAIT_S:.0f} s after "
            f"its end (now killed):\n{listing}",
            pytrace=False,
        )


@contextlib.contextmanager
def unwritable(folder: Path):
    """``folder`` made unwritable for this process for real, and writable again afterwards:
    as root, whom permissions do not stop, with the immutable attribute; otherwise with chmod."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if not shutil.which("chattr"):
            pytest.skip("root ignores permissions and chattr is not installed")
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip(f"cannot set the immutable attribute on {folder} (filesystem or capability)")
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    try:
        with pytest.raises(OSError):
            (folder / "probe").write_text("")
        yield folder
    finally:
        subprocess.run(undo, check=True)
