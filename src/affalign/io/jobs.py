"""Glue for Snakemake script jobs: logging to the rule's log file and clear failures."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

Result = TypeVar("Result")


def run_logged(log_path: str | Path, job: Callable[[], Result]) -> Result:
    """Run ``job`` with stdout and stderr appended to ``log_path``.

    On failure the traceback goes to the log and the job exits with status 1 and the
    error's message, which Snakemake shows with the log's path.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as stream:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                return job()
            except Exception as error:
                traceback.print_exc()
                message = f"{type(error).__name__}: {error}"
        sys.stderr.write(f"affalign: {message}\n(see {log_path})\n")
        raise SystemExit(1)
