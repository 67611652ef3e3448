"""A shard whose output cannot be written keeps its rows and fails alone, and its finished
siblings keep their outputs in results/ (real vLLM CPU server).

The failure is real: the shard's folder is made unwritable before the run (as root, whom
permissions do not stop, with the immutable attribute; otherwise with chmod).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from conftest import demo_config, job_counts, run_snakemake, unwritable, write_config
from tiny_models import tiny_engine

pytestmark = pytest.mark.slow

TOPICS = ["mask-mandates", "vaccines", "lockdowns"]
BLOCKED = "vaccines"
N_PER_SHARD = 120


def shard_path(topic: str) -> str:
    return f"results/generated/tiny-chat/covid-19/{topic}/default.parquet"


def shard_log(workdir: Path, topic: str) -> str:
    return (workdir / "logs" / "generate" / "tiny-chat" / "covid-19" / topic / "default.log").read_text()


def test_a_shard_that_cannot_be_written_keeps_its_rows_and_lets_its_siblings_finish(tiny_llama, tmp_path):
    config = demo_config()
    engine = tiny_engine()
    config["models"] = {"tiny-chat": {"path": str(tiny_llama), "kind": "instruct", "engine": engine}}
    covid = config["issues"]["covid-19"]
    covid["topics"] = {topic: covid["topics"][topic] for topic in TOPICS}
    config["issues"] = {"covid-19": covid}
    config["human"] = {"covid-19": config["human"]["covid-19"]}
    config["prompt_types"] = ["default"]
    config["generation"].update(n_per_shard=N_PER_SHARD, max_tokens=16, max_in_flight=2)
    config.pop("opinions", None)
    configfile = write_config(tmp_path / "study.yaml", config)
    targets = [shard_path(topic) for topic in TOPICS]
    store = tmp_path / "results" / ".shard-store" / "generated" / "tiny-chat"

    with unwritable((tmp_path / shard_path(BLOCKED)).parent):
        first = run_snakemake(tmp_path, "--", *targets, configfile=configfile)
        output = first.stdout + first.stderr
        assert first.returncode != 0, output
        message = f"cannot write {shard_path(BLOCKED)}"
        assert message in output and "its rows are kept in" in output, output[-5000:]
        # Snakemake's own clean-up, which used to die on the folder it could not remove.
        assert (
            "removedirs" not in output
            and f"left the empty folder {Path(shard_path(BLOCKED)).parent}" in output
        )
        kept = Path(re.search(r"its rows are kept in (\S+\.parquet)", shard_log(tmp_path, BLOCKED))[1])
        rows = pl.read_parquet(tmp_path / kept)
        assert rows.height == N_PER_SHARD and rows["topic"].unique().to_list() == [BLOCKED]
        assert len(list(store.glob("*.parquet"))) == len(TOPICS)
        siblings = [topic for topic in TOPICS if topic != BLOCKED]
        for topic in siblings:
            assert f"wrote {shard_path(topic)}" in shard_log(tmp_path, topic)
            # Snakemake removes every output of a failed group; finished shards are kept
            # (common.smk), whole, with the metadata Snakemake recorded for them.
            assert f"kept the finished shard {shard_path(topic)}" in output
            assert pl.read_parquet(tmp_path / shard_path(topic)).height == N_PER_SHARD
        # ...and Snakemake counts them as done: asked for alone, they have nothing to do. (A
        # run that needs their model's server reruns every consumer of it, these too:
        # Snakemake's rule for service groups; they then come from the store.)
        dry = run_snakemake(
            tmp_path, "--dry-run", "--", *(shard_path(topic) for topic in siblings), configfile=configfile
        )
        assert dry.returncode == 0 and not job_counts(dry.stdout), dry.stdout[-3000:] + dry.stderr[-3000:]

        # Now the blocked shard fails at once (its rows come from the store) while its
        # siblings have all their requests still to send: it waits for them.
        for stored in store.glob("*.parquet"):
            if stored.name != kept.name:
                stored.unlink()
        second = run_snakemake(tmp_path, "--", *targets, configfile=configfile)
        assert second.returncode != 0, second.stdout + second.stderr
        assert "failing once the 2 other consumers" in shard_log(tmp_path, BLOCKED)
        for topic in TOPICS:  # (Snakemake starts each job's log afresh)
            if topic != BLOCKED:
                assert f"{N_PER_SHARD}/{N_PER_SHARD} generations" in shard_log(tmp_path, topic), topic
                assert f"wrote {shard_path(topic)}" in shard_log(tmp_path, topic), topic
        assert len(list(store.glob("*.parquet"))) == len(TOPICS)

        finished = {topic: pl.read_parquet(tmp_path / shard_path(topic)) for topic in siblings}

    # With the folder writable again the rerun generates nothing: every shard is in the store.
    third = run_snakemake(tmp_path, "--", *targets, configfile=configfile)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    for topic in TOPICS:
        assert "finished earlier, taken from" in shard_log(tmp_path, topic).rstrip().splitlines()[-1]
    assert pl.read_parquet(tmp_path / shard_path(BLOCKED)).equals(rows)
    for topic in siblings:
        assert pl.read_parquet(tmp_path / shard_path(topic)).equals(finished[topic]), topic
