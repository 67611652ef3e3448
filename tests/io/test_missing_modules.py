"""A job whose interpreter lacks a third-party module fails with one line (interpreter,
module, what to do), in its log and on stderr, not with a traceback.

The modules are really missing: either never installed anywhere, or hidden from the job's
interpreter by its ``sys.path`` (``python -S`` leaves out site-packages, where polars,
pyarrow and aiohttp live; a script job drops site-packages from its own path), as they are
missing from a rule environment built without them.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO

from affalign import missing_module_line
from affalign.io import run_logged

ABSENT = "affalign_test_module_that_is_not_installed"


def expected_line(module: str, python: str = sys.executable) -> str:
    return (
        f"affalign: the interpreter {python} has no module {module!r}: run Snakemake from the "
        "workflow's environment (`make env`, then .venv/bin/snakemake), or for a model-side job "
        "point runtime.python in the config at an environment that has it (`make cluster-env`)"
    )


def import_error(name: str) -> ModuleNotFoundError:
    with pytest.raises(ModuleNotFoundError) as caught:
        importlib.import_module(name)
    return caught.value


def test_only_a_missing_third_party_module_gets_the_line():
    assert missing_module_line(import_error(ABSENT)) == expected_line(ABSENT)
    # A missing module of affalign itself or of the standard library is a bug: traceback.
    assert missing_module_line(import_error("affalign.no_such_stage")) is None
    assert missing_module_line(import_error("json.no_such_module")) is None
    assert missing_module_line(ValueError("No module named 'polars'")) is None


def test_run_logged_writes_one_line_for_a_module_missing_inside_the_job(tmp_path, capsys):
    log = tmp_path / "logs" / "job.log"
    with pytest.raises(SystemExit) as exit_:
        run_logged(log, lambda: importlib.import_module(ABSENT))
    assert exit_.value.code == 1
    assert log.read_text() == expected_line(ABSENT) + "\n"
    assert capsys.readouterr().err == expected_line(ABSENT) + "\n"


def test_run_logged_keeps_the_traceback_for_other_errors(tmp_path, capsys):
    log = tmp_path / "job.log"
    with pytest.raises(SystemExit):
        run_logged(log, lambda: importlib.import_module("affalign.no_such_stage"))
    assert "Traceback" in log.read_text()
    assert capsys.readouterr().err == (
        f"affalign: ModuleNotFoundError: No module named 'affalign.no_such_stage'\n(see {log})\n"
    )


def test_a_job_module_run_without_polars_says_so_in_one_line(tmp_path):
    # `python -S`: site-packages (polars, pyarrow, PyYAML...) is not on the path.
    python = sys.executable
    run = subprocess.run(
        [python, "-S", "-m", "affalign.config", str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
        timeout=60,
    )
    assert run.returncode == 1
    module = run.stderr.split("has no module ")[1].split(":")[0].strip("'") if run.stderr else ""
    assert run.stderr == expected_line(module, python) + "\n", run.stderr
    assert module in {"polars", "pyarrow", "yaml", "jsonschema", "numpy"}
    assert "Traceback" not in run.stderr


SCRIPT_JOB = """
rule job:
    output:
        "out.txt",
    log:
        "logs/job.log",
    script:
        "job.py"
"""

# The job hides site-packages from its own path (as an environment without polars would
# be) before it imports the package: snakemake itself is already imported by then.
JOB = """
import sys

sys.path[:] = [p for p in sys.path if "site-packages" not in p]
sys.path.insert(0, {src!r})

from affalign.io import run_logged  # noqa: E402

run_logged(snakemake.log[0], lambda: open(snakemake.output[0], "w").write("done"))
"""


def test_a_script_job_without_polars_fails_with_one_line_in_its_log(tmp_path):
    (tmp_path / "Snakefile").write_text(textwrap.dedent(SCRIPT_JOB))
    (tmp_path / "job.py").write_text(JOB.format(src=str(REPO / "src")))
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--directory", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    logged = (tmp_path / "logs" / "job.log").read_text()
    module = logged.split("has no module ")[1].split(":")[0].strip("'")
    assert module in {"polars", "pyarrow"}
    line = expected_line(module)
    assert logged == line + "\n"
    assert line in output
    assert "Traceback" not in output.split("Error in rule job")[0], output
