"""Shared fixtures: the repository, Snakemake as a subprocess, tiny real models."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "demo.yaml"


def run_snakemake(
    workdir: Path, *args: str, configfile: Path | None = None, timeout: int = 1800
) -> subprocess.CompletedProcess:
    """Run the workflow as ``make demo`` does: the command line and the local profile."""
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
    env = dict(os.environ, PYTHONUNBUFFERED="1", PATH=path)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir)


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


def demo_config() -> dict:
    """The demo config with every path made absolute, ready to be edited by a test."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["prompts"] = str(REPO / config["prompts"])
    for table in config["human"].values():
        table["path"] = str(REPO / table["path"])
    for survey in config.get("opinions", {}).get("surveys", {}).values():
        survey["questions"] = str(REPO / survey["questions"])
        survey["answers"] = str(REPO / survey["answers"])
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(copy.deepcopy(config), sort_keys=False))
    return path


@pytest.fixture()
def study(tmp_path: Path) -> tuple[Path, dict]:
    """A working folder and the demo config whose model paths point at an existing folder
    (the config check needs them to exist; the jobs tested with it never load a model)."""
    config = demo_config()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for model in config["models"].values():
        model["path"] = str(model_dir)
    return tmp_path, config


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised Llama causal LM with its own trained tokenizer and chat template."""
    from tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")
