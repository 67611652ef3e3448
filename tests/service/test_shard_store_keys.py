"""The shard store's keys are pinned: a key that changes makes every stored shard
unreachable (a rerun then sends all their requests again), so a change to what a key hashes
must be deliberate. Inputs are fixed bytes, not repository files that may change."""

from __future__ import annotations

import pytest

from affalign.classify.llm import Judge, store_key
from affalign.generate.prompts import ShardSpec
from affalign.generate.shards import Sampling, shard_key
from affalign.opinions.client import LogprobSupport, OpinionShard, Scoring, opinion_shard_key
from affalign.opinions.positional import Steering

GENERATION = ShardSpec(7, "m", "instruct", "covid-19", "COVID-19", "masks", "mask mandates", "liberal", 4)
MODEL = {"kind": "instruct", "model_source": "org/m", "revision": "abc123", "chat_template_kwargs": {}}
STEERING = Steering("Q?", ("Yes", "No"), "Yes", "I am a liberal.", "a liberal")


@pytest.fixture
def files(tmp_path):
    written = {}
    for name, text in {"prompts": "templates: []\n", "questions": "id,question\nq1,Why?\n"}.items():
        written[name] = tmp_path / name
        written[name].write_bytes(text.encode())
    written["posts"] = tmp_path / "posts.parquet"
    written["posts"].write_bytes(b"not parsed: only hashed")
    return written


def test_a_generation_shard_key_is_pinned(files):
    key = shard_key(GENERATION, MODEL, Sampling(64, 0.9, 0.95), files["prompts"])
    assert key == "3cfab6404b0b5315b56550bcbd4df3acd9a563096edd09e2bdafb05bc1b5a48a"


def test_an_opinion_shard_key_is_pinned(files):
    shard = OpinionShard(model="m", survey="economy", context="qa-liberal", steering=STEERING)
    scoring = Scoring(mode="auto", chat=True, chat_template_kwargs={"enable_thinking": False})
    assert (
        opinion_shard_key(shard, MODEL, scoring, files["questions"])
        == "056bff60333570cf8445a0e1b70ee25a019da814b3c22ddccbc813f68e435c1d"
    )
    detected = LogprobSupport("top-k", 5, "probed")
    assert (
        opinion_shard_key(shard, MODEL, scoring, files["questions"], detected)
        == "1af0715067d71711842c38f3eda7b8526b6e79bfccdfa36f4659d3974302b372"
    )


def test_an_llm_classifier_store_key_is_pinned(files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the settings name the prompt file by a fixed (relative) path
    (tmp_path / "prompt.txt").write_bytes(b"Labels:\n{labels}\nPost: {post}\n")
    settings = {
        "model": "judge",
        "labels": {"anger": "angry", "joy": "happy"},
        "prompt": "prompt.txt",
        "prompt_sha256": "0" * 64,
        "chat": True,
        "seed": 7,
        "max_tokens": 32,
        "revision": None,
    }
    judge = Judge.from_settings("judge", settings)
    assert (
        store_key(judge, settings, files["posts"])
        == "f8ac798ff79fe2becf0279cd9e80ad0cffe143fdb1906ae8d6fe1c4ca3b131ee"
    )
