"""Model weights from the Hugging Face hub: locked to commits and checked before any job.

Compute nodes load weights offline (``HF_HUB_OFFLINE=1``) from ``HF_HOME``. Offline, a
branch name such as ``main`` resolves only if ``refs/main`` was written when it was
downloaded, and it then means whatever ``main`` was that day. So:

* ``affalign weights fetch --configfile X`` downloads every hub id of the config (each
  model, each classifier model, every member of a binary set, each with its own revision)
  into ``HF_HOME`` and writes the lock (default ``config/weights.lock``): hub id, requested
  revision, resolved commit.
* ``affalign weights check --configfile X`` (and the workflow, before it submits anything)
  verifies that each is locked and present in the cache at its locked commit, with offline
  semantics, and lists what is missing with the command that fetches it.
* Jobs load the locked commit; provenance and the shard-store key record it.

Gated models (Llama, Gemma, ...) need an access token where ``fetch`` runs (``hf auth
login`` or ``HF_TOKEN``), never on the compute nodes.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from affalign.config.checks import model_folder_problem, selected_models
from affalign.io import atomic_write_text

DEFAULT_LOCK = Path("config/weights.lock")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
LOCK_HEADER = (
    "# Hub weights locked to commits: written by `affalign weights fetch`, read by the workflow\n"
    "# (jobs load these commits; provenance records them). Commit it with the config.\n"
)


class WeightsError(RuntimeError):
    """Weights that are not locked or not in the cache."""


@dataclass(frozen=True)
class HubReference:
    """One hub repository at one requested revision, and what in the config uses it."""

    hub_id: str
    revision: str
    used_by: tuple[str, ...] = field(default=(), compare=False)


def is_hub_id(reference: str, base: Path | None = None) -> bool:
    """A classifier's ``model`` is a hub id when it looks like one and is no local folder."""
    return bool(HUB_ID.match(reference)) and not ((base or Path.cwd()) / reference).exists()


def hub_references(config: Mapping[str, Any], base: Path | None = None) -> list[HubReference]:
    """Every hub repository a run of the config loads, once per (hub id, revision): the
    models it covers (``only_models`` narrows them as it narrows the jobs) and every
    classifier."""
    found: dict[tuple[str, str], list[str]] = {}

    def add(hub_id: str, revision: str | None, user: str) -> None:
        found.setdefault((hub_id, revision or "main"), []).append(user)

    models = selected_models(config) if "models" in config else {}
    for name, model in models.items():
        if "hub_id" in model:
            add(model["hub_id"], model.get("revision"), f"models.{name}")
    for name, classifier in config.get("classifiers", {}).items():
        if classifier.get("type") == "hf" and is_hub_id(classifier["model"], base):
            add(classifier["model"], classifier.get("revision"), f"classifiers.{name}")
        elif classifier.get("type") == "hf-binary-set":
            revisions = classifier.get("revisions", {})
            for label, reference in classifier["models"].items():
                if is_hub_id(reference, base):
                    revision = revisions.get(label, classifier.get("revision"))
                    add(reference, revision, f"classifiers.{name}.models.{label}")
    return [HubReference(hub, revision, tuple(users)) for (hub, revision), users in found.items()]


def read_lock(path: Path) -> dict[tuple[str, str], str]:
    """(hub id, requested revision) -> commit; empty when there is no lock yet."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    entries = (yaml.safe_load(text) or {}).get("weights") or []
    lock = {}
    for entry in entries:
        if not (isinstance(entry, dict) and {"hub_id", "revision", "commit"} <= set(entry)):
            raise WeightsError(f"{path}: every entry needs hub_id, revision and commit: {entry!r}")
        if not COMMIT.match(str(entry["commit"])):
            raise WeightsError(f"{path}: {entry['hub_id']}: {entry['commit']!r} is not a commit SHA")
        lock[(str(entry["hub_id"]), str(entry["revision"]))] = str(entry["commit"])
    return lock


def write_lock(path: Path, lock: Mapping[tuple[str, str], str]) -> None:
    entries = [
        {"hub_id": hub_id, "revision": revision, "commit": commit}
        for (hub_id, revision), commit in sorted(lock.items())
    ]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), LOCK_HEADER + yaml.safe_dump({"weights": entries}, sort_keys=False))


def locked_commit(lock: Mapping[tuple[str, str], str], hub_id: str, revision: str | None) -> str | None:
    """The commit to load for ``hub_id`` at ``revision``: locked, or the revision itself when
    it already is a commit, else None."""
    revision = revision or "main"
    return lock.get((hub_id, revision)) or (revision if COMMIT.match(revision) else None)


def cached_snapshot(hub_id: str, commit: str, cache_dir: Path | None = None) -> Path | None:
    """The snapshot folder of ``hub_id`` at ``commit`` in the hub cache, looked up as an
    offline job would (``local_files_only``), or None when it is not there."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(hub_id, revision=commit, local_files_only=True, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


# Snakemake options that only plan or report: missing weights are then a warning.
PLANNING_OPTIONS = {
    "--dry-run", "--dryrun", "--lint", "--summary", "--detailed-summary", "--list-changes",
    "--dag", "--rulegraph", "--filegraph", "--list-rules", "--list", "-l", "-S", "-D",
}  # fmt: skip


def planning_only(argv: Iterable[str]) -> bool:
    """Whether a Snakemake command line only plans (a dry run, lint, summaries, graphs):
    nothing is submitted, so missing weights are reported without stopping it."""
    for argument in argv:
        if argument in PLANNING_OPTIONS:
            return True
        # -n, also among other short flags (-np, -pn)
        short_flags = argument.startswith("-") and not argument.startswith("--") and argument[1:].isalpha()
        if short_flags and "n" in argument[1:]:
            return True
    return False


def fetch_command(configfile: str | None, lock_path: Path) -> str:
    parts = ["affalign weights fetch"]
    if configfile:
        parts.append(f"--configfile {configfile}")
    if Path(lock_path) != DEFAULT_LOCK:
        parts.append(f"--lock {lock_path}")
    return " ".join(parts)


def missing_weights(
    references: Iterable[HubReference], lock: Mapping[tuple[str, str], str], cache_dir: Path | None = None
) -> list[str]:
    """One line per reference that is not locked, not cached at its locked commit, or
    cached without a loadable model (config.json and weights)."""
    problems = []
    for reference in references:
        where = f"{reference.hub_id}@{reference.revision} ({', '.join(reference.used_by)})"
        commit = locked_commit(lock, reference.hub_id, reference.revision)
        if commit is None:
            problems.append(f"{where}: not in the weights lock")
            continue
        snapshot = cached_snapshot(reference.hub_id, commit, cache_dir)
        if snapshot is None:
            problems.append(f"{where}: commit {commit} is not in the hub cache")
            continue
        problem = model_folder_problem(snapshot)
        if problem:
            problems.append(f"{where}: the cached snapshot {snapshot} {problem}")
    return problems


def check_weights(
    config: Mapping[str, Any],
    lock_path: Path = DEFAULT_LOCK,
    configfile: str | None = None,
    cache_dir: Path | None = None,
) -> dict[tuple[str, str], str]:
    """Raise :class:`WeightsError` listing every missing weight and the command that fetches
    it; return the lock when everything is there."""
    lock = read_lock(lock_path)
    references = hub_references(config)
    problems = missing_weights(references, lock, cache_dir)
    if problems:
        hf_home = os.environ.get("HF_HOME", "~/.cache/huggingface (HF_HOME is not set)")
        raise WeightsError(
            f"{len(problems)} of {len(references)} hub weights are not ready (lock {lock_path}, "
            f"HF_HOME {hf_home}):\n  "
            + "\n  ".join(problems)
            + f"\nFetch them on a node with internet access, with the same HF_HOME:\n  "
            f"{fetch_command(configfile, lock_path)}"
        )
    return lock


def fetch_outcome(error: Exception, reference: HubReference) -> str:
    """What went wrong fetching ``reference``, and what to do about it, in one line."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    detail = " ".join(str(error).split())[:200]
    if isinstance(error, GatedRepoError):
        return (
            f"gated: request access on https://huggingface.co/{reference.hub_id}, then log in here "
            "(hf auth login, or set HF_TOKEN) with that account"
        )
    if isinstance(error, RevisionNotFoundError):
        return f"revision {reference.revision!r} not found on the hub"
    if isinstance(error, RepositoryNotFoundError):
        return "not found on the hub: check the hub id (a private repository needs hf auth login)"
    if isinstance(error, OSError | ConnectionError | TimeoutError) or type(error).__module__.startswith(
        "httpx"
    ):
        return f"network: the hub could not be reached from here ({type(error).__name__}: {detail})"
    return f"failed: {type(error).__name__}: {detail}"


def fetch_weights(
    config: Mapping[str, Any], lock_path: Path = DEFAULT_LOCK, cache_dir: Path | None = None
) -> dict[tuple[str, str], str]:
    """Download every hub reference of ``config`` and record its resolved commit in the lock
    (entries of other configs are kept). Prints one line per hub id with its outcome and goes
    on past failures; the lock holds what succeeded. Raises :class:`WeightsError` listing what
    could not be fetched. Needs the network; gated models need a token."""
    from huggingface_hub import snapshot_download

    lock = read_lock(lock_path)
    references = hub_references(config)
    failed = []
    for reference in references:
        # A locked commit stays what it is: refetching makes sure its files are there.
        revision = locked_commit(lock, reference.hub_id, reference.revision) or reference.revision
        where = f"{reference.hub_id}@{reference.revision}"
        try:
            folder = Path(snapshot_download(reference.hub_id, revision=revision, cache_dir=cache_dir))
        except Exception as error:
            outcome = fetch_outcome(error, reference)
            failed.append(f"{where} ({', '.join(reference.used_by)}): {outcome}")
            print(f"{where}: {outcome}", flush=True)
            continue
        lock[(reference.hub_id, reference.revision)] = folder.name
        print(f"{where}: fetched {folder.name} ({folder})", flush=True)
        write_lock(lock_path, lock)
    if failed:
        raise WeightsError(
            f"{len(failed)} of {len(references)} hub weights could not be fetched (the lock {lock_path} "
            "holds the others):\n  " + "\n  ".join(failed)
        )
    return lock


def hub_revision(lock: Mapping[tuple[str, str], str], hub_id: str, revision: str | None) -> str | None:
    """The locked commit of a hub id at its configured revision (the revision itself when
    nothing is locked, which only a dry run allows)."""
    return locked_commit(lock, hub_id, revision) or revision


def hub_commits(lock: Mapping[tuple[str, str], str]) -> Callable[[str, str], str | None]:
    """(reference, requested revision) -> the commit a classifier's job loads: the locked one
    for a hub id (:func:`hub_revision`), None for a local folder, which keeps its config."""

    def commit(reference: str, revision: str) -> str | None:
        return hub_revision(lock, reference, revision) if is_hub_id(reference) else None

    return commit


def locked_weights(
    config: Mapping[str, Any],
    *,
    config_source: str | None,
    main_process: bool = True,
    argv: Iterable[str] = (),
    warn: Callable[[str], None] = print,
) -> dict[tuple[str, str], str]:
    """The gate before anything is submitted: hub id and revision -> the commit jobs load
    (``config.weights_lock``). Every hub weight must be locked and in ``HF_HOME`` at its
    commit (``affalign weights check``); a run that only plans (``argv``: a dry run, lint,
    summaries) is warned through ``warn`` instead, once at its start and once after its job
    listing; a job on a node (``main_process`` false) only reads the lock. Raises
    :class:`WeightsError` otherwise."""
    lock_path = Path(config["weights_lock"])
    try:
        if not hub_references(config):
            return {}
        if not main_process:
            return read_lock(lock_path)
        return check_weights(config, lock_path, configfile=config_source)
    except WeightsError as error:
        if not planning_only(argv):
            raise
        warning = f"affalign (dry run): {error}"
        warn(warning)
        repeat_after_the_job_summary(warning)
        return read_lock(lock_path)


def repeat_after_the_job_summary(warning: str) -> None:
    """A pre-flight warning of a dry run, printed again when Snakemake exits: its job
    listing (thousands of lines for a study) scrolls the first one out of sight, and a dry
    run calls no onsuccess/onerror handler (Workflow.execute, Snakemake 9.27)."""
    import atexit

    def repeat() -> None:
        print(f"\n{warning}\n(repeated from the start of this dry run)", file=sys.stderr)

    atexit.register(repeat)
