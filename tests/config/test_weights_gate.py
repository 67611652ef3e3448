"""The weights gate the workflow passes before it submits anything
(affalign.config.weights.locked_weights): a run stops on weights that are not locked and
cached, a dry run is warned (twice: before and after its job listing), a job on a node only
reads the lock; hub_revision gives jobs the locked commit."""

from __future__ import annotations

import atexit

import pytest

from affalign.config import WeightsError, hub_revision, locked_weights
from affalign.config.weights import write_lock

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_study(lock) -> dict:
    return {
        "models": {"m": {"hub_id": "org/m", "kind": "base", "revision": "main"}},
        "classifiers": {},
        "weights_lock": str(lock),
    }


@pytest.fixture()
def at_exit(monkeypatch):
    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    return registered


def test_a_run_stops_on_weights_that_are_not_locked(tmp_path, at_exit):
    with pytest.raises(WeightsError, match=r"org/m@main \(models.m\): not in the weights lock"):
        locked_weights(hub_study(tmp_path / "weights.lock"), config_source="study.yaml", argv=["snakemake"])
    assert at_exit == []


def test_a_dry_run_is_warned_before_and_after_its_job_listing(tmp_path, at_exit, capsys):
    lock = tmp_path / "weights.lock"
    write_lock(lock, {("org/other", "main"): COMMIT})
    warned = []
    found = locked_weights(
        hub_study(lock), config_source="study.yaml", argv=["snakemake", "-n"], warn=warned.append
    )
    assert found == {("org/other", "main"): COMMIT}
    assert len(warned) == 1 and warned[0].startswith("affalign (dry run): 1 of 1 hub weights are not ready")
    assert "affalign weights fetch --configfile study.yaml" in warned[0]
    (repeat,) = at_exit
    repeat()
    assert capsys.readouterr().err == f"\n{warned[0]}\n(repeated from the start of this dry run)\n"


def test_a_job_on_a_node_only_reads_the_lock(tmp_path, at_exit):
    lock = tmp_path / "weights.lock"
    write_lock(lock, {("org/m", "main"): COMMIT})
    # Not cached here, which the submitting host checked: a job does not check again.
    assert locked_weights(hub_study(lock), config_source="s", main_process=False) == {
        ("org/m", "main"): COMMIT
    }


def test_a_study_without_hub_weights_needs_no_lock(tmp_path):
    study = {
        "models": {"m": {"path": "x", "kind": "base"}},
        "classifiers": {},
        "weights_lock": str(tmp_path / "no"),
    }
    assert locked_weights(study, config_source="s", argv=["snakemake"]) == {}


def test_jobs_get_the_locked_commit_or_the_revision_a_dry_run_allows():
    lock = {("org/m", "main"): COMMIT}
    assert hub_revision(lock, "org/m", "main") == COMMIT
    assert hub_revision(lock, "org/m", None) == COMMIT  # no revision means main
    assert hub_revision({}, "org/m", "v2") == "v2"
    assert hub_revision({}, "org/m", COMMIT) == COMMIT
