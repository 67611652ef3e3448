"""Quality gates that a broken change trips: formatting and lint of the workflow and package."""

import subprocess
import sys
from pathlib import Path

from conftest import REPO

BIN = Path(sys.executable).parent
PYTHON_SOURCES = ("src", "tests", "benchmarks", "workflow/scripts")


def run(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300, input=stdin)


def test_snakefmt_leaves_the_workflow_unchanged():
    result = run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint_is_clean():
    result = run(
        sys.executable, "-m", "snakemake", "--lint", "--configfile", "config/config.yaml", "--dry-run"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Congratulations, your workflow is in a good condition!" in output, output


def test_ruff_is_clean():
    result = run(str(BIN / "ruff"), "check", *PYTHON_SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_the_code_unchanged():
    result = run(str(BIN / "ruff"), "format", "--check", *PYTHON_SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_scripts_may_use_only_the_snakemake_global():
    """The scripts are linted like the package; the one name Snakemake injects is known there."""

    def lint_script(source: str) -> subprocess.CompletedProcess:
        return run(
            str(BIN / "ruff"), "check", "--stdin-filename", "workflow/scripts/new_stage.py", "-", stdin=source
        )

    assert lint_script("print(snakemake.input[0])\n").returncode == 0
    typo = lint_script("print(snakemake.input[0], snakemak.output[0])\n")
    assert typo.returncode == 1 and "F821 Undefined name `snakemak`" in typo.stdout, typo.stdout
