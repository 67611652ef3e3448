"""``affalign check`` (and ``plan``, ``weights``) on bad configs: one line per problem, exit
status 1, never a traceback; ``--config only_models=[m]`` narrows all of them to ``m``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_config

from affalign.config.cli import main

COMMANDS = {"check": ["check"], "plan": ["plan"], "weights": ["weights", "check"]}


def run(capsys: pytest.CaptureFixture[str], workdir: Path, *args: str) -> tuple[int, str, str]:
    """The command in-process, in ``workdir``: an exception it does not turn into one line
    fails the test."""
    here = Path.cwd()
    os.chdir(workdir)
    try:
        status = main([*args, "--configfile", "study.yaml"])
    finally:
        os.chdir(here)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_problems(status: int, err: str, *fragments: str) -> None:
    assert status == 1, err
    for fragment in fragments:
        assert fragment in err, err
    for line in err.strip().splitlines():
        assert line.startswith("affalign: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_misspelt_key_is_one_line_for_every_command(study, capsys, command):
    workdir, config = study
    config["classifers"] = config.pop("classifiers")
    write_config(workdir / "study.yaml", config)
    status, _, err = run(capsys, workdir, *COMMANDS[command])
    assert_one_line_problems(status, err, "study.yaml: not a valid affalign config: top level:")
    assert "classifers" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_key_given_twice_is_one_line_for_every_command(study, capsys, command):
    workdir, _ = study
    (workdir / "study.yaml").write_text("seed: 1\nprompts: p.yaml\nseed: 2\n")
    status, _, err = run(capsys, workdir, *COMMANDS[command])
    assert_one_line_problems(status, err, "study.yaml: key 'seed' is given twice, on line 1 and line 3")


@pytest.mark.parametrize("command", ["check", "plan"])
def test_a_missing_model_path_and_runtime_are_each_named(study, capsys, command):
    workdir, config = study
    config["models"]["smollm2-135m-completion"]["path"] = str(workdir / "no-such-model")
    config["runtime"] = {"python": str(workdir / "gpu-runtime" / "bin" / "python")}
    write_config(workdir / "study.yaml", config)
    status, out, err = run(capsys, workdir, *COMMANDS[command])
    assert_one_line_problems(
        status,
        err,
        "study.yaml: models.smollm2-135m-completion.path",
        "does not exist",
        "study.yaml: runtime.python: ",
    )
    assert out == ""  # plan prints no bill for a config that cannot run


def hub_models(config: dict) -> dict:
    """The demo config with both models taken from the hub."""
    for index, model in enumerate(config["models"].values()):
        model.pop("path")
        model["hub_id"] = f"org/hub-model-{index}"
    return config


def test_missing_weights_are_one_line_each_with_the_fetch_command(study, capsys, monkeypatch, tmp_path):
    workdir, config = study
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_config(workdir / "study.yaml", hub_models(config))
    status, _, err = run(capsys, workdir, "check")
    assert_one_line_problems(
        status,
        err,
        "study.yaml: weights: org/hub-model-0@main (models.smollm2-135m-instruct): not in the weights lock",
        "study.yaml: weights: org/hub-model-1@main",
        "affalign weights fetch --configfile study.yaml",
    )


def test_only_models_narrows_check_weights_and_plan(study, capsys, monkeypatch, tmp_path):
    workdir, config = study
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_config(workdir / "study.yaml", hub_models(config))
    only = ["--config", "only_models=[smollm2-135m-completion]"]
    for command in (["check"], ["weights", "check"]):
        status, _, err = run(capsys, workdir, *command, *only)
        assert status == 1 and "org/hub-model-1@main" in err, err
        assert "org/hub-model-0" not in err and "smollm2-135m-instruct" not in err, err
    status, out, err = run(capsys, workdir, "plan", *only)
    assert status == 0, err
    assert "smollm2-135m-completion" in out and "smollm2-135m-instruct" not in out, out
    status, _, err = run(capsys, workdir, "check", "--config", "only_models=[no-such-model]")
    assert_one_line_problems(status, err, "only_models names ['no-such-model'], which are not models")


def test_a_config_that_can_run_passes(study, capsys):
    workdir, config = study
    write_config(workdir / "study.yaml", config)
    status, out, err = run(capsys, workdir, "check")
    assert status == 0, err
    assert out.startswith("study.yaml: ready to run"), out


def test_the_console_shows_no_traceback_for_a_misspelt_key(study):
    """The case of the report, as a user runs it: `affalign plan` on a misspelt key."""
    workdir, config = study
    config["classifers"] = config.pop("classifiers")
    configfile = write_config(workdir / "study.yaml", config)
    result = subprocess.run(
        [sys.executable, "-m", "affalign.config.cli", "plan", "--configfile", str(configfile)],
        capture_output=True, text=True, cwd=workdir, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
