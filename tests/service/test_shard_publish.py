"""A consumer's finished shard: the store first, then its output; a shard that cannot be
written keeps its rows and fails only after its siblings (generation and opinion shards
share this, affalign.service.consumer).

The failures are real: folders made unwritable (conftest.unwritable) and a sibling
consumer that is a real process registered with the service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import polars as pl
import pytest
from conftest import REPO, unwritable

from affalign.io import read_provenance
from affalign.opinions.client import OpinionShard, Scoring, opinion_shard_key, write_opinion_shard
from affalign.service import ConsumerOptions, ServiceClient, ShardWriteError, publish_shard
from affalign.service.client import consumers_folder

FRAME = pl.DataFrame({"question_id": ["q1", "q2"], "p": [0.25, 0.75]})
PROVENANCE = {"stage": "opinions", "model": "m"}
# A consumer that waits for a starting server (whose pid, the test's, is alive) until killed.
SIBLING = (
    "import sys; from affalign.service import ServiceClient; "
    "ServiceClient(sys.argv[1], 'logs/m.server.log', max_in_flight=1, request_timeout_s=5)"
    ".wait(timeout_s=600, poll_s=0.1)"
)


def client_of(service_file) -> ServiceClient:
    return ServiceClient(service_file, "logs/m.server.log", max_in_flight=1, request_timeout_s=5)


def test_a_shard_is_kept_in_the_store_and_placed_at_its_output(tmp_path):
    kept, output = tmp_path / "store" / "key.parquet", tmp_path / "out" / "shard.parquet"
    publish_shard(
        FRAME, PROVENANCE, output, kept=kept, client=client_of(tmp_path / "none.json"), start_timeout_s=1
    )
    assert pl.read_parquet(kept).equals(FRAME) and pl.read_parquet(output).equals(FRAME)
    assert read_provenance(output) == PROVENANCE


def test_a_store_that_cannot_be_written_only_costs_the_copy(tmp_path, capsys):
    output = tmp_path / "out" / "shard.parquet"
    with unwritable(tmp_path / "store"):
        publish_shard(
            FRAME,
            PROVENANCE,
            output,
            kept=tmp_path / "store" / "key.parquet",
            client=client_of(tmp_path / "none.json"),
            start_timeout_s=1,
        )
    assert pl.read_parquet(output).equals(FRAME)
    assert "warning: cannot keep the shard in the store" in capsys.readouterr().out


def test_an_unwritable_output_keeps_the_rows_and_fails_after_the_running_sibling(tmp_path):
    service = tmp_path / "m.json"
    service.write_text(json.dumps({"status": "starting", "pid": os.getpid()}))
    sibling = subprocess.Popen([sys.executable, "-c", SIBLING, str(service)])
    kept, output = tmp_path / "store" / "key.parquet", tmp_path / "out" / "shard.parquet"
    outcome: list[BaseException] = []

    def publish() -> None:
        try:
            publish_shard(
                FRAME, PROVENANCE, output, kept=kept, client=client_of(service), start_timeout_s=0.5
            )
        except BaseException as error:  # handed to the test's thread
            outcome.append(error)

    with unwritable(tmp_path / "out"):
        try:
            while not any(consumers_folder(service).glob("*")):  # registered when it starts waiting
                assert sibling.poll() is None
                time.sleep(0.1)
            failing = threading.Thread(target=publish)
            failing.start()
            failing.join(timeout=3.0)
            assert failing.is_alive() and not outcome  # held while the sibling runs
            assert pl.read_parquet(kept).equals(FRAME)  # the rows are safe already
        finally:
            sibling.kill()
            sibling.wait()
        failing.join(timeout=60)
    assert not failing.is_alive()
    [error] = outcome
    assert isinstance(error, ShardWriteError)
    assert str(error).startswith(f"cannot write {output}: ")
    assert str(error).endswith(f"; its rows are kept in {kept} and a rerun takes them from there")


def test_an_unwritable_output_without_a_store_says_the_rows_are_lost(tmp_path):
    with unwritable(tmp_path / "out"), pytest.raises(ShardWriteError, match="its rows are lost"):
        publish_shard(
            FRAME,
            PROVENANCE,
            tmp_path / "out" / "shard.parquet",
            kept=None,
            client=client_of(tmp_path / "none.json"),  # no server, no siblings: fails at once
            start_timeout_s=1,
        )


SHARD = OpinionShard(model="m", survey="economy", context="default", steering=None)
QUESTIONS = REPO / "resources" / "demo" / "survey" / "economy-questions.csv"


def write_opinion(tmp_path, output, store):
    return write_opinion_shard(
        SHARD,
        model_info={"kind": "instruct"},
        questions_file=QUESTIONS,
        scoring=Scoring(),
        output=output,
        options=ConsumerOptions(
            service_file=tmp_path / "no-service.json",  # no server: the store must answer
            server_log="logs/m.server.log",
            store=store,
            max_in_flight=1,
            server_start_timeout_s=1,
            request_timeout_s=1,
        ),
    )


def test_an_opinion_shard_is_taken_from_the_store_or_fails_naming_it(tmp_path):
    store = tmp_path / "store"
    kept = store / f"{opinion_shard_key(SHARD, {'kind': 'instruct'}, Scoring(), QUESTIONS)}.parquet"
    publish_shard(
        FRAME, PROVENANCE, kept, kept=None, client=client_of(tmp_path / "none.json"), start_timeout_s=1
    )
    with unwritable(tmp_path / "blocked"), pytest.raises(ShardWriteError) as failure:
        write_opinion(tmp_path, tmp_path / "blocked" / "default.parquet", store)
    assert f"its rows are kept in {kept}" in str(failure.value)
    taken = write_opinion(tmp_path, tmp_path / "out" / "default.parquet", store)
    assert taken.equals(FRAME) and pl.read_parquet(tmp_path / "out" / "default.parquet").equals(FRAME)
    # Anything that changes the content changes the key.
    assert opinion_shard_key(SHARD, {"kind": "instruct"}, Scoring(), QUESTIONS) != opinion_shard_key(
        SHARD, {"kind": "instruct"}, Scoring(mode="top-k", top_logprobs=5), QUESTIONS
    )
