"""Hub weights locked to commits and checked before anything is submitted.

Every test writes a real huggingface_hub cache layout itself (``models--org--name/`` with
``blobs/``, ``refs/`` and ``snapshots/<commit>/``, the files as symlinks into ``blobs/``, as
the hub client writes them) and reads it with the hub client's own offline lookup; nothing
is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, demo_config, run_snakemake, write_config

from affalign.config.weights import (
    HubReference,
    WeightsError,
    check_weights,
    fetch_weights,
    hub_references,
    planning_only,
    read_lock,
    write_lock,
)

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def cache_model(
    hub: Path, hub_id: str, commit: str, *, branch: str | None = "main", weights: bool = True
) -> Path:
    """Write ``hub_id`` at ``commit`` into the hub cache ``hub`` as huggingface_hub does."""
    repo = hub / f"models--{hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    files = {"config.json": b'{"model_type": "llama"}\n'}
    if weights:
        files["model.safetensors"] = b"weights of " + hub_id.encode() + commit.encode()
    for name, content in files.items():
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = snapshot / name
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(blob, snapshot))
    if branch:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
    return snapshot


def study_config() -> dict:
    return {
        "models": {
            "llama": {"hub_id": "org/llama-8b", "kind": "base"},
            "pinned": {"hub_id": "org/qwen-7b", "kind": "instruct", "revision": COMMIT_B},
            "local": {"path": "resources/models/x", "kind": "base"},
        },
        "classifiers": {
            "emotions": {"type": "hf", "model": "org/emotion", "labels": ["joy"], "revision": "v1"},
            "morals": {
                "type": "hf-binary-set",
                "models": {"care": "org/care", "fairness": "org/fairness"},
                "revisions": {"fairness": "v2"},
            },
            "lexicon": {"type": "lexicon", "lexicon": "mfd2"},
        },
    }


def test_every_hub_id_is_found_with_its_own_revision():
    references = {(r.hub_id, r.revision): r.used_by for r in hub_references(study_config())}
    assert references == {
        ("org/llama-8b", "main"): ("models.llama",),
        ("org/qwen-7b", COMMIT_B): ("models.pinned",),
        ("org/emotion", "v1"): ("classifiers.emotions",),
        ("org/care", "main"): ("classifiers.morals.models.care",),
        ("org/fairness", "v2"): ("classifiers.morals.models.fairness",),
    }


def test_a_classifier_model_that_is_a_local_folder_is_no_hub_id(tmp_path):
    (tmp_path / "org" / "emotion").mkdir(parents=True)
    config = {"classifiers": {"e": {"type": "hf", "model": "org/emotion", "labels": ["joy"]}}}
    assert hub_references(config, base=tmp_path) == []
    assert hub_references(config, base=tmp_path / "elsewhere") == [HubReference("org/emotion", "main")]


def test_the_lock_round_trips_and_rejects_what_is_not_a_commit(tmp_path):
    lock = tmp_path / "weights.lock"
    write_lock(lock, {("org/m", "main"): COMMIT_A})
    assert read_lock(lock) == {("org/m", "main"): COMMIT_A}
    assert read_lock(tmp_path / "absent.lock") == {}
    lock.write_text(yaml.safe_dump({"weights": [{"hub_id": "org/m", "revision": "main", "commit": "main"}]}))
    with pytest.raises(WeightsError, match="not a commit SHA"):
        read_lock(lock)


def hub_config() -> dict:
    return {
        "models": {"llama": {"hub_id": "org/llama-8b", "kind": "base"}},
        "classifiers": {"morals": {"type": "hf-binary-set", "models": {"care": "org/care"}}},
    }


def test_check_lists_everything_missing_with_the_command_that_fetches_it(tmp_path):
    hub = tmp_path / "hub"
    lock = tmp_path / "weights.lock"
    with pytest.raises(WeightsError) as caught:
        check_weights(hub_config(), lock, configfile="study.yaml", cache_dir=hub)
    message = str(caught.value)
    assert "2 of 2 hub weights are not ready" in message
    assert "org/llama-8b@main (models.llama): not in the weights lock" in message
    assert "org/care@main (classifiers.morals.models.care): not in the weights lock" in message
    assert f"affalign weights fetch --configfile study.yaml --lock {lock}" in message

    # Locked, but the cache holds another commit (main moved since): offline, that is missing.
    write_lock(lock, {("org/llama-8b", "main"): COMMIT_A, ("org/care", "main"): COMMIT_A})
    cache_model(hub, "org/llama-8b", COMMIT_B)
    cache_model(hub, "org/care", COMMIT_A, weights=False)
    with pytest.raises(WeightsError) as caught:
        check_weights(hub_config(), lock, cache_dir=hub)
    message = str(caught.value)
    assert f"org/llama-8b@main (models.llama): commit {COMMIT_A} is not in the hub cache" in message
    assert "org/care@main" in message and "has no weights files" in message

    cache_model(hub, "org/llama-8b", COMMIT_A)
    cache_model(hub, "org/care", COMMIT_A)
    assert check_weights(hub_config(), lock, cache_dir=hub) == read_lock(lock)


def test_a_revision_that_is_a_commit_needs_no_lock_entry(tmp_path):
    hub = tmp_path / "hub"
    config = {"models": {"m": {"hub_id": "org/m", "kind": "base", "revision": COMMIT_A}}, "classifiers": {}}
    cache_model(hub, "org/m", COMMIT_A, branch=None)  # fetched by SHA: no refs/ at all
    assert check_weights(config, tmp_path / "weights.lock", cache_dir=hub) == {}


def test_fetch_locks_the_commit_a_branch_resolved_to(tmp_path, monkeypatch):
    """fetch with the hub client offline: main resolves through refs/main of the cache, as it
    would from the hub, and the lock records the commit, not 'main'."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = tmp_path / "hub"
    cache_model(hub, "org/llama-8b", COMMIT_A)
    cache_model(hub, "org/care", COMMIT_B)
    lock = tmp_path / "weights.lock"
    write_lock(lock, {("org/other", "main"): COMMIT_B})  # another config's entry is kept
    fetch_weights(hub_config(), lock, cache_dir=hub)
    assert read_lock(lock) == {
        ("org/llama-8b", "main"): COMMIT_A,
        ("org/care", "main"): COMMIT_B,
        ("org/other", "main"): COMMIT_B,
    }
    # Once locked, main moving on does not change what is loaded.
    cache_model(hub, "org/llama-8b", "c" * 40)
    fetch_weights(hub_config(), lock, cache_dir=hub)
    assert read_lock(lock)[("org/llama-8b", "main")] == COMMIT_A


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["snakemake", "-n"], True),
        (["snakemake", "-np", "--cores", "1"], True),
        (["snakemake", "--dry-run"], True),
        (["snakemake", "--lint"], True),
        (["snakemake", "--profile", "profiles/slurm"], False),
        (["snakemake", "--configfile", "n.yaml", "-j", "4"], False),
    ],
)
def test_planning_only_command_lines(argv, expected):
    assert planning_only(argv) is expected


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "affalign.config.cli", *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src"), **env),
    )  # fmt: skip


def test_the_weights_command_checks_against_hf_home(tmp_path):
    # A whole study's config: the command validates it as the workflow does.
    configfile = write_config(tmp_path / "study.yaml", {**demo_config(), **hub_config()})
    lock = tmp_path / "weights.lock"
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    missing = cli("weights", "check", "--configfile", str(configfile), "--lock", str(lock), env=env)
    assert missing.returncode == 1
    assert (
        "not in the weights lock" in missing.stderr
        and "affalign weights fetch --configfile" in missing.stderr
    )
    cache_model(tmp_path / "hf" / "hub", "org/llama-8b", COMMIT_A)
    cache_model(tmp_path / "hf" / "hub", "org/care", COMMIT_B)
    fetched = cli("weights", "fetch", "--configfile", str(configfile), "--lock", str(lock), env=env)
    assert fetched.returncode == 0, fetched.stderr
    ready = cli("weights", "check", "--configfile", str(configfile), "--lock", str(lock), env=env)
    assert ready.returncode == 0 and "2 hub weights present" in ready.stdout, ready.stderr


def hub_study(study, tmp_path: Path) -> tuple[Path, Path, dict]:
    """The demo study with its first model taken from the hub (hub id org/tiny-1b)."""
    workdir, config = study
    model = next(iter(config["models"]))
    spec = config["models"][model]
    spec.pop("path")
    spec["hub_id"] = "org/tiny-1b"
    config["weights_lock"] = str(workdir / "weights.lock")
    return workdir, write_config(workdir / "hub.yaml", config), config


def test_a_run_with_missing_weights_stops_before_anything_is_submitted(study, tmp_path):
    workdir, configfile, _ = hub_study(study, tmp_path)
    env = {"HF_HOME": str(tmp_path / "hf")}
    run = run_snakemake(workdir, configfile=configfile, env=env)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "org/tiny-1b@main" in output and "not in the weights lock" in output, output[-3000:]
    assert f"affalign weights fetch --configfile {configfile}" in output
    assert not (workdir / "results").exists()
    # A dry run submits nothing: it warns and plans, and repeats the warning after its job
    # summary (where a long job listing would otherwise have scrolled it away).
    dry = run_snakemake(workdir, "--dry-run", configfile=configfile, env=env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    output = dry.stdout + dry.stderr
    summary = output.rindex("Job stats:")
    assert output.index("not in the weights lock") < summary
    assert (
        "not in the weights lock" in output[summary:]
        and "(repeated from the start of this dry run)" in output
    )


def test_jobs_load_the_locked_commit(study, tmp_path):
    workdir, configfile, config = hub_study(study, tmp_path)
    cache_model(tmp_path / "hf" / "hub", "org/tiny-1b", COMMIT_A)
    write_lock(Path(config["weights_lock"]), {("org/tiny-1b", "main"): COMMIT_A})
    model = next(iter(config["models"]))
    target = f"results/generated/{model}/covid-19/mask-mandates/default.parquet"
    dry = run_snakemake(
        workdir, "--dry-run", "--printshellcmds", "--", target, configfile=configfile,
        env={"HF_HOME": str(tmp_path / "hf")},
    )  # fmt: skip
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "not in the weights lock" not in dry.stdout + dry.stderr
    assert f"--revision={shlex.quote(COMMIT_A)}" in dry.stdout or f"--revision={COMMIT_A}" in dry.stdout, (
        dry.stdout
    )


def test_only_models_narrows_the_hub_references_to_the_models_of_the_run():
    config = {**study_config(), "only_models": ["pinned"]}
    users = {user for reference in hub_references(config) for user in reference.used_by}
    assert users == {
        "models.pinned",
        "classifiers.emotions",
        "classifiers.morals.models.care",
        "classifiers.morals.models.fairness",
    }


def test_fetch_names_each_hub_id_with_its_outcome_and_goes_on(tmp_path, monkeypatch, capsys):
    """A gated model first (as Llama is in config/config.yaml) must not stop the others."""
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    def response(status: int) -> httpx2.Response:
        return httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/api/models/x"))

    failures = {
        "org/gated": GatedRepoError("403 Client Error: access restricted", response=response(403)),
        "org/gone": RepositoryNotFoundError("404 Client Error", response=response(404)),
        "org/offline": httpx2.ConnectError("[Errno 101] Network is unreachable"),
    }
    hub = tmp_path / "hub"
    fine = cache_model(hub, "org/fine", COMMIT_A)

    def snapshot_download(repo_id: str, revision: str, cache_dir: Path | None = None) -> str:
        if repo_id in failures:
            raise failures[repo_id]
        return str(fine)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    config = {
        "models": {name.split("/")[1]: {"hub_id": name, "kind": "base"} for name in [*failures, "org/fine"]},
        "classifiers": {},
    }
    lock = tmp_path / "weights.lock"
    with pytest.raises(WeightsError) as caught:
        fetch_weights(config, lock, cache_dir=hub)
    printed = capsys.readouterr().out
    assert "org/gated@main: gated: request access on https://huggingface.co/org/gated" in printed
    assert "hf auth login" in printed
    assert "org/gone@main: not found on the hub" in printed
    assert "org/offline@main: network: the hub could not be reached from here (ConnectError" in printed
    assert f"org/fine@main: fetched {COMMIT_A}" in printed
    assert read_lock(lock) == {("org/fine", "main"): COMMIT_A}  # what succeeded is locked
    message = str(caught.value)
    assert message.startswith("3 of 4 hub weights could not be fetched")
    for hub_id in failures:
        assert f"{hub_id}@main (models.{hub_id.split('/')[1]}):" in message


def test_the_gate_of_a_subset_run_checks_only_its_models(study, tmp_path):
    """only_models=[the local model]: the hub model's missing weights do not stop the run."""
    workdir, configfile, config = hub_study(study, tmp_path)
    local = list(config["models"])[1]
    env = {"HF_HOME": str(tmp_path / "hf")}
    subset = run_snakemake(
        workdir, "--dry-run", "--config", f"only_models=[{local}]", configfile=configfile, env=env
    )
    assert subset.returncode == 0, subset.stderr[-3000:]
    assert "org/tiny-1b" not in subset.stdout + subset.stderr
