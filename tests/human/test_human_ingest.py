"""Ingest of raw exports: nested fields, groups from shared domains, topics from keywords,
quality counts and exclusions, and every validation error with file, column and row."""

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from affalign.human.ideology import IdeologySettings
from affalign.human.ingest import StudyDesign, ingest_posts
from affalign.human.quality import quality_report
from affalign.human.source import HumanDataError, SourceSpec, check_source
from affalign.io import TableError, read_table, table_schema

GROUPS = ["liberal", "conservative"]
KEYWORDS = {"masks": ["mask", "masks", "#maskup"], "vaccines": ["vaccine", "booster"]}
SCORES = {"left.com": -2.0, "leftish.com": -1.0, "center.com": 0.0, "right.com": 2.0}
RAW_COLUMNS = {
    "post_id": "id_str",
    "text": ["extended_tweet.full_text", "full_text", "text"],
    "user": "user.id_str",
    "urls": "entities.urls",
}
URL_FIELDS = ("expanded_url", "unwound_url", "url")
# Every setting given, as the schema-validated config gives them (nothing here has a default).
RAW = SourceSpec(
    columns=RAW_COLUMNS,
    group_from="domains",
    topic_from="keywords",
    url_fields=URL_FIELDS,
    drop_unknown_groups=False,
)
COLUMN_MODE = SourceSpec(
    columns={"post_id": "post_id", "text": "text", "group": "group", "topic": "topic"},
    group_from="column",
    topic_from="column",
    url_fields=URL_FIELDS,
    drop_unknown_groups=False,
)
IDEOLOGY = IdeologySettings(scale=(-2.0, 2.0), min_scored_urls=1, liberal_max=-0.5, conservative_min=0.5)


def tweet(post_id, user, text, *urls, field="full_text"):
    record = {"id_str": str(post_id), "user": {"id_str": user, "name": user.upper()}}
    record["entities"] = {
        "urls": [{"url": f"https://t.co/{i}", "expanded_url": url} for i, url in enumerate(urls)]
    }
    if field == "extended":
        record["text"] = text[:10] + "…"
        record["extended_tweet"] = {"full_text": text}
    else:
        record[field] = text
    return record


def export() -> list[dict]:
    """Two liberal users, two conservative ones, a centrist and one without links."""
    return [
        tweet(1, "ann", "Masks save lives #MaskUp", "https://www.LEFT.com/a"),
        tweet(2, "ann", "Get the vaccine", "http://m.leftish.com/b", field="text"),
        tweet(3, "bob", "My mask, my choice", "https://right.com/c"),
        tweet(4, "bob", "No vaccine mandates", "https://right.com/d", field="extended"),
        tweet(5, "cat", "A mask and a booster", "https://leftish.com/e"),
        tweet(6, "dan", "Booster? No thanks", "https://right.com/f"),
        tweet(7, "eve", "Masks, vaccines, whatever", "https://center.com/g"),
        tweet(8, "fay", "Mask up", "https://t.co/unexpanded"),
        tweet(9, "dan", "Nothing about the topics here", "https://right.com/h"),
    ]


def frame(records) -> pl.DataFrame:
    return pl.DataFrame(records, infer_schema_length=None)


def ingest(records_or_frame, spec=RAW, **kwargs):
    raw = records_or_frame if isinstance(records_or_frame, pl.DataFrame) else frame(records_or_frame)
    arguments = dict(path="export.jsonl", issue="covid", spec=spec, domain_scores=SCORES, ideology=IDEOLOGY)
    study = dict(topics=KEYWORDS, groups=GROUPS, multiple_topics="all", min_posts_per_group=0)
    for key, value in kwargs.items():
        (study if key in study else arguments)[key] = value
    return ingest_posts(raw, study=StudyDesign(**study), **arguments)


def test_raw_export_with_nested_fields():
    result = ingest(export())
    posts = result.posts
    assert posts.columns == ["post_id", "issue", "topic", "group", "text"]
    assert posts.schema == {c: pl.String for c in posts.columns}
    rows = {(r["post_id"], r["topic"], r["group"]) for r in posts.to_dicts()}
    assert rows == {
        ("1", "masks", "liberal"),
        ("2", "vaccines", "liberal"),
        ("3", "masks", "conservative"),
        ("4", "vaccines", "conservative"),
        ("5@masks", "masks", "liberal"),  # in two topics under the default policy 'all'
        ("5@vaccines", "vaccines", "liberal"),
        ("6", "vaccines", "conservative"),
    }
    texts = dict(zip(posts["post_id"], posts["text"], strict=True))
    assert texts["4"] == "No vaccine mandates"  # extended_tweet.full_text before the truncated text
    assert texts["2"] == "Get the vaccine"  # `text` when there is no full_text
    assert dict(zip(result.dropped["reason"], result.dropped["rows"], strict=True)) == {
        "user has too few scored URLs": 1,
        "user's score between the thresholds": 1,
        "empty text": 0,
        "no topic keyword": 1,
    }
    users = {
        r["user"]: (r["urls"], r["scored_urls"], r["score"], r["group"]) for r in result.users.to_dicts()
    }
    assert users == {
        "ann": (2, 2, -1.5, "liberal"),
        "bob": (2, 2, 2.0, "conservative"),
        "cat": (1, 1, -1.0, "liberal"),
        "dan": (2, 2, 2.0, "conservative"),
        "eve": (1, 1, 0.0, None),
        "fay": (1, 0, None, None),
    }
    assert result.users.columns == [
        "issue",
        "user",
        "posts",
        "urls",
        "scored_urls",
        "score",
        "group",
        "reason",
    ]


def test_quality_counts_posts_and_users_per_topic_and_group():
    result = ingest(export())
    quality = {
        (r["topic"], r["group"]): (r["posts"], r["users"], r["status"]) for r in result.quality.to_dicts()
    }
    assert quality == {
        ("masks", "liberal"): (2, 2, "kept"),
        ("masks", "conservative"): (1, 1, "kept"),
        ("vaccines", "liberal"): (2, 2, "kept"),
        ("vaccines", "conservative"): (2, 2, "kept"),
    }
    assert result.quality.columns == ["issue", "topic", "group", "posts", "users", "status", "reason"]
    report = quality_report(result, issue="covid", source="export.jsonl", settings={"group_from": "domains"})
    assert "| masks | kept | 2 | 1 |" in report
    assert "| t.co | 1 |" in report  # the unexpanded link is the most shared unscored domain


@pytest.mark.parametrize(
    ("policy", "expected_ids", "several"),
    [
        ("all", {"5@masks", "5@vaccines"}, None),
        ("first", {"5"}, None),
        ("drop", set(), 1),
    ],
)
def test_multiple_topic_policies_in_the_ingest(policy, expected_ids, several):
    result = ingest(export(), multiple_topics=policy)
    ids = {i for i in result.posts["post_id"] if i.startswith("5")}
    assert ids == expected_ids
    reasons = dict(zip(result.dropped["reason"], result.dropped["rows"], strict=True))
    assert reasons.get("several topics") == several
    if policy == "first":
        assert result.posts.filter(pl.col("post_id") == "5")["topic"].to_list() == ["masks"]


def test_ideology_thresholds_and_minimum_urls_change_who_is_in():
    strict = ingest(export(), ideology=replace(IDEOLOGY, min_scored_urls=2))
    assert set(strict.users.filter(pl.col("group").is_not_null())["user"]) == {"ann", "bob", "dan"}
    wide = ingest(export(), ideology=replace(IDEOLOGY, liberal_max=0.0, conservative_min=1.0))
    assert wide.users.filter(pl.col("user") == "eve")["group"].to_list() == ["liberal"]


def test_topic_below_the_minimum_is_excluded_with_a_warning():
    result = ingest(export(), min_posts_per_group=2)
    assert set(result.posts["topic"]) == {"vaccines"}
    assert list(result.excluded) == ["masks"]
    assert "conservative has 1 posts (minimum 2)" in result.excluded["masks"]
    assert len(result.warnings) == 1 and "topic 'masks' excluded from alignment" in result.warnings[0]
    reasons = dict(zip(result.dropped["reason"], result.dropped["rows"], strict=True))
    assert reasons["topic below minimum posts"] == 3
    statuses = set(zip(result.quality["topic"], result.quality["status"], strict=True))
    assert statuses == {("masks", "excluded"), ("vaccines", "kept")}
    assert "* `masks`: conservative has 1 posts" in quality_report(
        result, issue="covid", source="export.jsonl", settings={}
    )


def test_every_topic_below_the_minimum_is_an_error():
    with pytest.raises(HumanDataError, match=r"every topic of issue 'covid' has fewer than 3 posts"):
        ingest(export(), min_posts_per_group=3)


def test_a_topic_without_a_group_is_an_error_when_no_minimum_is_set():
    records = [r for r in export() if r["id_str"] != "3"]
    with pytest.raises(HumanDataError, match=r"topic 'masks' has no posts from group 'conservative'"):
        ingest(records)
    assert "masks" in ingest(records, min_posts_per_group=1).excluded


def test_an_empty_group_is_always_an_error():
    records = [r for r in export() if r["user"]["id_str"] not in ("bob", "dan")]
    with pytest.raises(
        HumanDataError,
        match=r"export\.jsonl: no posts from group 'conservative' are left in issue 'covid'; users: ",
    ):
        ingest(records, min_posts_per_group=1)


def test_urls_as_lists_of_strings_and_as_delimited_strings():
    base = {
        "id": ["1", "2", "3", "4"],
        "body": ["mask", "mask", "vaccine", "vaccine"],
        "who": ["a", "b", "a", "b"],
    }
    lists = [["https://left.com/1"], ["https://right.com/1", None], [], None]
    strings = ["https://left.com/1", "['https://right.com/1', 'https://t.co/x']", "", None]
    columns = {"post_id": "id", "text": "body", "user": "who", "urls": "links"}
    spec = replace(RAW, columns=columns)
    for links in (lists, strings):
        result = ingest(pl.DataFrame({**base, "links": links}), spec=spec)
        assert dict(zip(result.users["user"], result.users["group"], strict=True)) == {
            "a": "liberal",
            "b": "conservative",
        }


def test_url_objects_with_a_field_that_is_always_null():
    records = export()
    for record in records:
        for url in record["entities"]["urls"]:
            url["unwound_url"] = None
    result = ingest(records)
    assert result.users.filter(pl.col("user") == "ann")["scored_urls"].to_list() == [2]


def test_integer_ids_become_strings_and_topic_column_mode_reports_users():
    raw = pl.DataFrame(
        {
            "id": [10, 11, 12, 13],
            "text": ["a", "b", "c", "d"],
            "group": ["liberal", "conservative", "liberal", "conservative"],
            "topic": ["masks", "masks", "vaccines", "vaccines"],
            "uid": [1, 2, 1, 3],
        }
    )
    spec = replace(COLUMN_MODE, columns={**COLUMN_MODE.columns, "post_id": "id", "user": "uid"})
    result = ingest(raw, spec=spec, topics=list(KEYWORDS))
    assert result.posts["post_id"].to_list() == ["10", "11", "12", "13"]
    assert result.quality["users"].to_list() == [1, 1, 1, 1]
    assert result.users.select("user", "posts", "group").rows() == [
        ("1", 2, "liberal"),
        ("2", 1, "conservative"),
        ("3", 1, "conservative"),
    ]


def test_a_flattened_column_with_dots_wins_over_a_nested_path():
    raw = pl.DataFrame(
        {
            "id_str": ["1", "2", "3", "4"],
            "full_text": ["mask", "mask", "vaccine", "vaccine"],
            "user.id_str": ["a", "b", "a", "b"],
            "entities.urls": ["left.com", "right.com", "", ""],
        }
    )
    result = ingest(raw)
    assert set(result.posts["group"]) == {"liberal", "conservative"}


# --- validation errors: file, column and row ---


def test_missing_nested_field_names_what_the_record_has():
    spec = replace(RAW, columns={**RAW_COLUMNS, "user": "user.screen_name"})
    with pytest.raises(
        HumanDataError,
        match=r"export\.jsonl: column 'user\.screen_name' \(for 'user', config key "
        r"human\.covid\.columns\.user\) is missing; 'user' has fields \['id_str', 'name'\]",
    ):
        ingest(export(), spec=spec)


def test_no_text_candidate_exists():
    spec = replace(RAW, columns={**RAW_COLUMNS, "text": ["body", "content"]})
    with pytest.raises(HumanDataError, match=r"none of the columns \['body', 'content'\] \(for 'text'"):
        ingest(export(), spec=spec)


def test_domains_mode_needs_user_and_url_columns():
    spec = replace(RAW, columns={"post_id": "id_str", "text": "full_text"})
    with pytest.raises(
        HumanDataError, match=r"group_from is 'domains' but config key human\.covid\.columns\.user"
    ):
        ingest(export(), spec=spec)


def test_mistyped_nested_text_and_user():
    records = export()
    records[0]["full_text"] = 12
    for record in records[1:]:
        record.pop("full_text", None)
    spec = replace(RAW, columns={**RAW_COLUMNS, "text": "full_text"})
    with pytest.raises(HumanDataError, match=r"column 'full_text' \(text\) must hold text, found Int64"):
        ingest(records, spec=spec)
    raw = frame(export()).with_columns(pl.col("user").struct.with_fields(pl.lit(1.5).alias("id_str")))
    with pytest.raises(
        HumanDataError, match=r"column 'user\.id_str' \(user\) must hold text or integers, found Float64"
    ):
        ingest(raw)


def test_url_objects_without_any_url_field():
    spec = replace(RAW, url_fields=("link",))
    with pytest.raises(
        HumanDataError, match=r"holds objects with fields \['url', 'expanded_url'\], none of \['link'\]"
    ):
        ingest(export(), spec=spec)


def test_mistyped_url_column():
    raw = frame(export()).with_columns(pl.lit(3).alias("links"))
    spec = replace(RAW, columns={**RAW_COLUMNS, "urls": "links"})
    with pytest.raises(HumanDataError, match=r"column 'links' \(urls\) must hold a list of URLs"):
        ingest(raw, spec=spec)


def test_empty_user_names_the_row():
    records = export()
    records[3]["user"]["id_str"] = " "
    with pytest.raises(
        HumanDataError, match=r"export\.jsonl: column 'user\.id_str' \(user\) is empty in row 4"
    ):
        ingest(records)


def test_duplicate_post_ids_name_the_row():
    records = export()
    records[6]["id_str"] = "2"
    with pytest.raises(
        HumanDataError, match=r"post id '2' in row 2 is not unique \(column 'id_str'; again in row 7\)"
    ):
        ingest(records)


def test_undecodable_binary_text_names_column_and_row():
    raw = pl.DataFrame(
        {
            "post_id": ["1", "2"],
            "text": [b"mask", b"bad \xff mask"],
            "group": ["liberal", "conservative"],
            "topic": ["masks", "masks"],
        }
    )
    with pytest.raises(HumanDataError, match=r"column 'text' \(text\) row 2: text is not valid UTF-8"):
        ingest(raw, spec=COLUMN_MODE, topics=["masks"])


# --- files: CSV, JSON lines and parquet, read and never modified ---


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_reads_jsonl_with_fields_that_appear_late(tmp_path):
    records = [tweet(i, "ann", f"mask {i}", field="text") for i in range(1, 1502)]
    records[-1]["extended_tweet"] = {"full_text": "late extended"}
    path = write_jsonl(tmp_path / "export.jsonl", records)
    before = path.read_bytes()
    raw = read_table(path)
    assert "extended_tweet" in raw.columns
    assert path.read_bytes() == before


def test_parquet_with_nested_fields(tmp_path):
    path = tmp_path / "export.parquet"
    frame(export()).write_parquet(path)
    result = ingest(read_table(path), path=str(path))
    assert result.posts.height == 7
    check_source(path, table_schema(path), RAW, "covid")


def test_undecodable_csv_names_column_and_row(tmp_path):
    path = tmp_path / "posts.csv"
    path.write_bytes(b'post_id,text,group,topic\n1,ok,liberal,masks\n2,"bad \xff",liberal,masks\n')
    with pytest.raises(
        TableError, match=rf"{path}: cannot read the table \(column 'text' row 2: .*not valid UTF-8"
    ):
        read_table(path)


def test_undecodable_jsonl_names_column_and_row(tmp_path):
    path = tmp_path / "export.jsonl"
    good = json.dumps(tweet(1, "ann", "fine")).encode()
    bad = b'{"id_str": "2", "user": {"id_str": "bob"}, "full_text": "bad \xff here"}'
    path.write_bytes(good + b"\n\n" + bad + b"\n")
    with pytest.raises(TableError, match=r"column 'full_text' row 2: text is not valid UTF-8 \(byte 0xff"):
        read_table(path)


def test_config_check_of_a_jsonl_sample_only_needs_top_level_columns(tmp_path):
    path = write_jsonl(tmp_path / "export.jsonl", export())
    schema = table_schema(path)
    check_source(path, schema, RAW, "covid", nested=False)
    spec = replace(RAW, columns={**RAW_COLUMNS, "user": "author.id"})
    with pytest.raises(HumanDataError, match=r"column 'author\.id' \(for 'user'"):
        check_source(path, schema, spec, "covid", nested=False)
