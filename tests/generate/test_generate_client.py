"""The generation shard consumer's requests and its shard store (no server needed)."""

import polars as pl
from conftest import REPO

from affalign.generate.prompts import GenerationRequest
from affalign.generate.shards import RequestStyle, Sampling, _payload, shard_key, write_generation_shard
from affalign.service import ConsumerOptions

REQUEST = GenerationRequest(index=3, template_id="t-01", prompt="Write a tweet about masks.", seed=1234)
SAMPLING = Sampling(max_tokens=40, temperature=0.9, top_p=0.95)


def options_without_server(tmp_path, store) -> ConsumerOptions:
    return ConsumerOptions(
        service_file=tmp_path / "no-service.json",
        server_log="logs/m.server.log",
        store=store,
        max_in_flight=1,
        server_start_timeout_s=1,
        request_timeout_s=1,
    )


def test_instruct_models_get_seeded_chat_requests_with_template_arguments():
    style = RequestStyle.of({"kind": "instruct", "chat_template_kwargs": {"enable_thinking": False}})
    endpoint, body = _payload(REQUEST, "m", style, SAMPLING)
    assert endpoint == "/v1/chat/completions"
    assert body["messages"] == [{"role": "user", "content": REQUEST.prompt}]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert (body["seed"], body["max_tokens"], body["temperature"], body["top_p"]) == (1234, 40, 0.9, 0.95)
    assert "stop" not in body


def test_base_models_get_completion_prompts_that_stop_at_a_newline():
    endpoint, body = _payload(REQUEST, "m", RequestStyle.of({"kind": "base"}), SAMPLING)
    assert endpoint == "/v1/completions"
    assert body["prompt"] == REQUEST.prompt and body["stop"] == ["\n"]


def test_chat_template_can_be_switched_off():
    style = RequestStyle.of({"kind": "instruct", "chat_template": False})
    endpoint, body = _payload(REQUEST, "m", style, SAMPLING)
    assert endpoint == "/v1/completions" and "stop" not in body


def test_finished_shards_are_taken_from_the_store_without_a_server(tmp_path):
    from affalign.generate.prompts import ShardSpec
    from affalign.io.parquet import write_table

    shard = ShardSpec(1, "m", "instruct", "covid-19", "COVID-19", "masks", "masks", "default", 2)
    info = {"kind": "instruct", "model_source": "x"}
    prompts = REPO / "resources" / "prompts.yaml"
    store = tmp_path / "store"
    finished = pl.DataFrame({"post_id": ["a", "b"], "text": ["one", "two"]})
    write_table(
        finished, store / f"{shard_key(shard, info, SAMPLING, prompts)}.parquet", {"stage": "generate"}
    )
    frame = write_generation_shard(
        shard,
        model_info=info,
        prompts_file=prompts,
        sampling=SAMPLING,
        output=tmp_path / "out" / "default.parquet",
        options=options_without_server(tmp_path, store),
    )
    assert frame.equals(finished) and pl.read_parquet(tmp_path / "out" / "default.parquet").equals(finished)
    # Anything that changes the content changes the key.
    assert shard_key(shard, info, SAMPLING, prompts) != shard_key(
        shard, {**info, "dtype": "x"}, SAMPLING, prompts
    )


def test_a_shard_that_cannot_be_placed_fails_naming_the_stored_copy(tmp_path):
    import pytest
    from conftest import unwritable

    from affalign.generate.prompts import ShardSpec
    from affalign.io.parquet import write_table
    from affalign.service import ShardWriteError

    shard = ShardSpec(1, "m", "instruct", "covid-19", "COVID-19", "masks", "masks", "default", 2)
    info = {"kind": "instruct", "model_source": "x"}
    prompts = REPO / "resources" / "prompts.yaml"
    kept = tmp_path / "store" / f"{shard_key(shard, info, SAMPLING, prompts)}.parquet"
    write_table(pl.DataFrame({"post_id": ["a", "b"]}), kept, {"stage": "generate"})
    with unwritable(tmp_path / "out"), pytest.raises(ShardWriteError) as failure:
        write_generation_shard(
            shard,
            model_info=info,
            prompts_file=prompts,
            sampling=SAMPLING,
            output=tmp_path / "out" / "default.parquet",
            options=options_without_server(tmp_path, tmp_path / "store"),  # no siblings: fails at once
        )
    assert f"cannot write {tmp_path / 'out' / 'default.parquet'}" in str(failure.value)
    assert f"its rows are kept in {kept}" in str(failure.value)
    assert pl.read_parquet(kept).height == 2
