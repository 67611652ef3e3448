"""Glue for Snakemake script jobs: logging to the rule's log file and clear failures."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from affalign import missing_module_line

Result = TypeVar("Result")


def run_logged(log_path: str | Path, job: Callable[[], Result]) -> Result:
    """Run ``job`` with stdout and stderr appended to ``log_path``.

    On failure the traceback goes to the log and the job exits with status 1 and the
    error's message, which Snakemake shows with the log's path. A third-party module the
    interpreter lacks is one line instead, in the log and on stderr
    (:func:`affalign.missing_module_line`: interpreter, module, what to do); a job that
    lacks it already on import gets the same line from the hook in :mod:`affalign`.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as stream:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                return job()
            except Exception as error:
                message = missing_module_line(error)
                if message:
                    print(message)
                else:
                    traceback.print_exc()
                    message = f"affalign: {type(error).__name__}: {error}\n(see {log_path})"
        sys.stderr.write(f"{message}\n")
        raise SystemExit(1)
