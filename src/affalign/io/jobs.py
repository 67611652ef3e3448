"""Glue for jobs: logging to the rule's log file, clear failures and warnings, and whether
a process they wait on is still there. (The flags of the consumers of a model are
:mod:`affalign.service.consumer`'s.)"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from affalign import missing_module_line, missing_module_message

Result = TypeVar("Result")


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this pid exists on this host (another user's counts)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def traceback_path(log_path: str | Path) -> Path:
    """Where :func:`run_logged` keeps the traceback of a data error: beside the job's log,
    which the profiles have Snakemake print on failure (``show-failed-logs``), so that the
    console shows the message alone."""
    return Path(f"{log_path}.traceback")


def is_data_error(error: BaseException) -> bool:
    """Whether ``error`` is a problem with the user's data (a :class:`~affalign.io.TableError`:
    human posts, domain tables, surveys), whose message names the file and what to fix."""
    # Looked up, not imported: this module stays free of polars, and an error of that
    # class can only exist if its module was imported.
    tables = sys.modules.get("affalign.io.tables")
    return tables is not None and isinstance(error, tables.TableError)


def print_job_warning(warning: str) -> None:
    """A warning in the job's log (stdout, redirected by :func:`run_logged`) and on the
    console, which that redirection does not reach."""
    print(f"WARNING: {warning}", flush=True)
    print(f"affalign: WARNING: {warning}", file=sys.__stderr__, flush=True)


def run_logged(log_path: str | Path, job: Callable[[], Result]) -> Result:
    """Run ``job`` with stdout and stderr appended to ``log_path``.

    On failure the job exits with status 1 and a short message on stderr, which Snakemake
    shows with the log's path (the local and SLURM profiles print the log too):

    * a third-party module the interpreter lacks: :func:`affalign.missing_module_line`
      (interpreter, module, what to do), in the log and on stderr, no traceback; a job that
      lacks it already on import gets the same line from the hook in :mod:`affalign`;
    * a data error (:func:`is_data_error`): ``affalign: data error: <message>`` in the log
      and on stderr; its traceback, for a bug report, goes to :func:`traceback_path`, which
      the log names;
    * anything else (a bug): the traceback in the log, and on stderr the error's type and
      message with the log's path.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    kept_traceback = traceback_path(log_path)
    kept_traceback.unlink(missing_ok=True)
    with open(log_path, "a", buffering=1) as stream:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            try:
                return job()
            except Exception as error:
                message = missing_module_line(error)
                if message:
                    print(message)
                elif is_data_error(error):
                    message = f"affalign: data error: {error}"
                    kept_traceback.write_text(traceback.format_exc())
                    print(f"{message}\n(traceback for a bug report: {kept_traceback})")
                else:
                    traceback.print_exc()
                    message = f"affalign: {type(error).__name__}: {error}\n(see {log_path})"
        sys.stderr.write(f"{message}\n")
        raise SystemExit(1)


def missing_module(modules: Sequence[str]) -> str | None:
    """The first module a job needs that this interpreter cannot import (the name Python
    reports, so a dependency of ``modules`` missing underneath is named itself), or None.

    Imported, not only looked up: a job imports them next anyway, and a package that is
    installed but whose own imports fail is missing for the job all the same.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            return error.name or name
    return None


def start_job(log_path: str | Path, modules: Sequence[str], needed_for: str) -> bool:
    """Begin a model-side job's log with ``[affalign] interpreter: <sys.executable>`` and
    check that ``modules`` import; if one does not, write one line saying so to the log
    and the same line to stderr (no traceback) and return False.

    The workflow chose the interpreter (``runtime.python``), so the log says which one ran,
    and a wrong choice is named as such rather than as a traceback deep in a library.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"[affalign] interpreter: {sys.executable}\n")
    missing = missing_module(modules)
    if missing is None:
        return True
    message = missing_module_message(missing, needed_for)
    with open(log_path, "a") as log:
        log.write(message + "\n")
    sys.stderr.write(message + "\n")
    return False
