import polars as pl
import pytest

from affalign.human.ingest import HumanDataError, SourceSpec, ingest_posts

TOPICS = ["masks", "vaccines"]
GROUPS = ["liberal", "conservative"]


def table(**overrides):
    frame = {
        "id": ["1", "2", "3", "4", "5", "6"],
        "body": ["a", "b", "c", "d", "e", "f"],
        "side": ["liberal", "conservative", "liberal", "conservative", "moderate", "liberal"],
        "subject": ["masks", "masks", "vaccines", "vaccines", "masks", "schools"],
    }
    frame.update(overrides)
    return pl.DataFrame(frame)


COLUMNS = {"post_id": "id", "text": "body", "group": "side", "topic": "subject"}
# Groups and topics from columns; every setting given, as the validated config gives them.
SPEC = SourceSpec(
    columns=COLUMNS, group_from="column", topic_from="column", url_fields=("expanded_url", "url")
)


def ingest(frame, **kwargs):
    arguments = dict(
        path="posts.csv",
        issue="covid",
        spec=SPEC,
        topics=TOPICS,
        groups=GROUPS,
        multiple_topics=None,
        min_posts_per_group=0,
    )
    arguments.update(kwargs)
    return ingest_posts(frame, **arguments)


def run(frame, **kwargs):
    result = ingest(frame, **kwargs)
    return result.posts, result.dropped


def test_normalises_and_counts_what_it_leaves_out():
    posts, dropped = run(table())
    assert posts.columns == ["post_id", "issue", "topic", "group", "text"]
    assert posts["post_id"].to_list() == ["1", "2", "3", "4"]
    assert dict(zip(dropped["reason"], dropped["rows"], strict=True)) == {
        "group not in study": 1,
        "topic not in study": 1,
        "empty text": 0,
    }


def test_missing_column_names_file_and_key():
    with pytest.raises(HumanDataError, match=r"posts\.csv: column 'body' \(for 'text'.*columns\.text"):
        run(table().drop("body"))


def test_duplicate_ids_name_the_row():
    with pytest.raises(HumanDataError, match=r"post id '1' in row 1 is not unique"):
        run(table(id=["1", "2", "3", "4", "5", "1"]))


def test_empty_group_in_a_topic_is_an_error():
    frame = table(side=["liberal", "liberal", "liberal", "conservative", "moderate", "liberal"])
    with pytest.raises(HumanDataError, match=r"topic 'masks' has no posts from group 'conservative'"):
        run(frame)


def test_mistyped_column_is_an_error():
    with pytest.raises(HumanDataError, match=r"column 'body' \(text\) must hold text"):
        run(table(body=[1, 2, 3, 4, 5, 6]))


def test_minimum_posts_per_group_excludes_a_topic_instead_of_failing():
    frame = table(side=["liberal", "liberal", "liberal", "conservative", "moderate", "liberal"])
    result = ingest(frame, min_posts_per_group=1)
    assert result.posts["topic"].unique().to_list() == ["vaccines"]
    assert result.excluded == {"masks": "conservative has 0 posts (minimum 1)"}
    assert dict(zip(result.dropped["reason"], result.dropped["rows"], strict=True)) == {
        "group not in study": 1,
        "topic not in study": 1,
        "empty text": 0,
        "topic below minimum posts": 2,
    }
    assert result.users.is_empty() and result.users.columns[:2] == ["issue", "user"]


def test_empty_text_is_counted_not_an_error():
    frame = table(
        body=["a", "b", "c", "d", "e", "   "],
        side=["liberal", "conservative", "liberal", "conservative", "liberal", "liberal"],
        subject=["masks"] * 6,
    )
    posts, dropped = run(frame, topics=["masks"])
    assert posts.height == 5
    assert dict(zip(dropped["reason"], dropped["rows"], strict=True))["empty text"] == 1


def test_group_column_without_text_values_is_an_error():
    with pytest.raises(HumanDataError, match=r"column 'side' \(group\) is empty in row 3"):
        run(table(side=["liberal", "conservative", None, "conservative", "moderate", "liberal"]))
