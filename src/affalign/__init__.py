"""affalign: whose emotions, moral sentiments and opinions do language models reflect?

The package mirrors the workflow: one subpackage per stage of ``workflow/rules/``.

=============  =======================  ==============================================
subpackage     rule file                what it does
=============  =======================  ==============================================
``human``      ``human.smk``            ingest human posts: groups, topics, audit
``service``    ``generate.smk``         the model's vLLM server and the one HTTP client
``generate``   ``generate.smk``         prompts and generation shards
``classify``   ``classify.smk``         emotion / moral-foundation labels per post
``align``      ``align.smk``            distributions, 1 − JSD, baselines, comparisons
``figures``    ``report.smk``           heatmaps and bar charts
``opinions``   ``opinions.smk``         survey answers and positional alignment
``config``     ``common.smk``           checks of a config before any job runs
``io``         (every rule)             tables in, parquet + provenance out, atomic writes
``stats``      (align, opinions)        intervals, sign-flip test, Holm / BH adjustments
=============  =======================  ==============================================

A stage imports other stages only through their package (``from affalign.io import
write_table``), never their modules; ``tests/workflow/test_layout.py`` checks it.
"""

import sys as _sys


def missing_module_message(module: str, needed_for: str | None = None, python: str | None = None) -> str:
    """One line: which interpreter lacks which third-party module, and what to do.

    Kept here, importing nothing, because a job that lacks ``polars`` cannot import
    :mod:`affalign.io` at all.
    """
    python = python or _sys.executable
    purpose = f" ({needed_for})" if needed_for else ""
    return (
        f"affalign: the interpreter {python} has no module {module!r}{purpose}: run Snakemake from "
        "the workflow's environment (`make env`, then .venv/bin/snakemake), or for a model-side job "
        "point runtime.python in the config at an environment that has it (`make cluster-env`)"
    )


def missing_module_line(error: BaseException) -> str | None:
    """:func:`missing_module_message` for an error that says a third-party module is
    missing (``polars``, ``aiohttp``, ``pyarrow``...); None for any other error, a missing
    ``affalign`` or standard-library module included (those are bugs, not an environment
    to fix)."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    top = error.name.partition(".")[0]
    if top == __name__ or top in _sys.stdlib_module_names:
        return None
    return missing_module_message(error.name)


def _job_log() -> str | None:
    """The log of the Snakemake ``script:`` job this process runs, if it runs one."""
    job = getattr(_sys.modules.get("__main__"), "snakemake", None)
    if type(job).__name__ != "Snakemake" or not type(job).__module__.startswith("snakemake."):
        return None
    logs = list(getattr(job, "log", []) or [])
    return str(logs[0]) if logs else None


def _runs_a_job() -> bool:
    """Whether this process is a job: a Snakemake ``script:`` job, or an affalign module
    run with ``python -m`` (Snakemake itself and test sessions import affalign too)."""
    # While `python -m affalign.x` imports the packages above its module, __main__ is not
    # that module yet: the command line says what runs.
    argv = list(getattr(_sys, "orig_argv", []))
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    return _job_log() is not None or module.startswith(f"{__name__}.")


def _install_missing_module_hook() -> None:
    """A job whose interpreter lacks a third-party module fails as it imports, before it
    can log anything: replace that traceback by :func:`missing_module_line`, on stderr and
    in the job's log (exit status 1 as before)."""
    previous = _sys.excepthook

    def report(kind, error, trace):
        line = missing_module_line(error)
        if line is None:
            previous(kind, error, trace)
            return
        log = _job_log()
        if log:
            try:
                with open(log, "a") as stream:
                    stream.write(line + "\n")
            except OSError:
                pass
        _sys.stderr.write(line + "\n")

    _sys.excepthook = report


if _runs_a_job():
    _install_missing_module_hook()
