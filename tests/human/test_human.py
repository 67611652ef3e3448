"""Ingest from group and topic columns: what is kept, what is left out and counted, the
group values matched or refused, and tables without posts."""

import json
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from affalign.human.ingest import IngestParams, StudyDesign, ingest_posts, run_ingest
from affalign.human.source import HumanDataError, SourceSpec, check_has_rows
from affalign.io import read_provenance, run_logged, traceback_path

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
    columns=COLUMNS,
    group_from="column",
    topic_from="column",
    url_fields=("expanded_url", "url"),
    drop_unknown_groups=False,
)
# The table above has a 'moderate' post: these tests leave it out on purpose.
DROPPING = replace(SPEC, drop_unknown_groups=True)


def ingest(frame, **kwargs):
    arguments = dict(path="posts.csv", issue="covid", spec=SPEC)
    study = dict(topics=TOPICS, groups=GROUPS, multiple_topics=None, min_posts_per_group=0)
    for key, value in kwargs.items():
        (study if key in study else arguments)[key] = value
    return ingest_posts(frame, study=StudyDesign(**study), **arguments)


def run(frame, **kwargs):
    result = ingest(frame, **kwargs)
    return result.posts, result.dropped


def run_ingest_job(tmp_path: Path, source: Path, *, drop_unknown_groups: bool = False) -> dict[str, str]:
    """The ingest job's entry point on ``source`` with this file's study; its outputs."""
    outputs = {
        name: str(tmp_path / "out" / file)
        for name, file in {
            "posts": "posts.parquet",
            "dropped": "dropped.csv",
            "users": "users.csv",
            "quality": "quality.csv",
            "report": "quality.md",
        }.items()
    }
    run_ingest(
        issue="covid",
        table=str(source),
        outputs=outputs,
        params=IngestParams(
            source={
                "columns": COLUMNS,
                "group_from": "column",
                "topic_from": "column",
                "url_fields": ["url"],
                "drop_unknown_groups": drop_unknown_groups,
            },
            topics=TOPICS,
            keywords={},
            groups=GROUPS,
            topic_assignment={"min_posts_per_group": 0},
            ideology={},
        ),
    )
    return outputs


def test_normalises_and_counts_what_it_leaves_out():
    posts, dropped = run(table(), spec=DROPPING)
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


def test_mistyped_column_is_an_error():
    with pytest.raises(HumanDataError, match=r"column 'body' \(text\) must hold text"):
        run(table(body=[1, 2, 3, 4, 5, 6]))


def test_minimum_posts_per_group_excludes_a_topic_instead_of_failing():
    frame = table(side=["liberal", "liberal", "liberal", "conservative", "moderate", "liberal"])
    result = ingest(frame, min_posts_per_group=1, spec=DROPPING)
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
    result = ingest(frame, topics=["masks"])
    assert result.posts.height == 5
    assert dict(zip(result.dropped["reason"], result.dropped["rows"], strict=True))["empty text"] == 1
    assert result.warnings == [
        "issue 'covid': 1 row left out because column 'body' (text) is empty: row 6 (counted in "
        "dropped.csv as 'empty text')"
    ]


def test_empty_texts_are_warned_with_their_first_row_numbers_and_a_count():
    frame = pl.DataFrame(
        {
            "id": [str(i) for i in range(1, 17)],
            "body": ["a", "b", *[""] * 11, None, "c", "d"],
            "side": ["liberal", "conservative"] * 8,
            "subject": ["masks"] * 16,
        }
    )
    result = ingest(frame, topics=["masks"])
    assert result.posts["post_id"].to_list() == ["1", "15", "16", "2"]
    assert result.warnings == [
        "issue 'covid': 12 rows left out because column 'body' (text) is empty: rows 3, 4, 5, 6, 7, 8, 9, "
        "10, 11, 12 and 2 more (counted in dropped.csv as 'empty text')"
    ]


def test_group_column_without_text_values_is_an_error():
    with pytest.raises(HumanDataError, match=r"column 'side' \(group\) is empty in row 3"):
        run(table(side=["liberal", "conservative", None, "conservative", "moderate", "liberal"]))


# --- group values that are not groups of the study ---


def test_group_values_match_the_study_groups_ignoring_case_and_spaces():
    frame = table(
        side=["Liberal", " conservative", "LIBERAL ", "conservative", "liberal", "Liberal"],
        subject=["masks", "masks", "vaccines", "vaccines", "masks", "vaccines"],
    )
    result = ingest(frame)
    assert dict(zip(result.posts["post_id"], result.posts["group"], strict=True)) == {
        "1": "liberal",
        "2": "conservative",
        "3": "liberal",
        "4": "conservative",
        "5": "liberal",
        "6": "liberal",
    }
    assert result.dropped.filter(pl.col("reason") == "group not in study")["rows"].to_list() == [0]
    assert len(result.warnings) == 1
    assert result.warnings[0] == (
        "issue 'covid': 4 rows of column 'side' (group) were matched to the study's groups ignoring "
        "case and spaces: 'Liberal' -> liberal (2 rows), ' conservative' -> conservative (1 row), "
        "'LIBERAL ' -> liberal (1 row)"
    )


def test_values_that_match_no_group_stop_with_the_values_and_their_counts():
    frame = table(side=["liberal", "conservative", "moderate", "conservative", "Independent", "moderate"])
    with pytest.raises(HumanDataError) as error:
        ingest(frame)
    assert str(error.value) == (
        "posts.csv: column 'side' (group) holds values that are not groups of the study "
        "['liberal', 'conservative'] (even ignoring case and spaces): 'moderate' (2 rows), "
        "'Independent' (1 row); fix them in the table (or map them with a column of your own), or set "
        "config key human.covid.drop_unknown_groups: true to leave those rows out"
    )


def test_many_unknown_values_are_listed_by_count_then_summarised():
    values = [f"v{i:02d}" for i in range(12) for _ in range(i + 1)]
    frame = pl.DataFrame(
        {
            "id": [str(i) for i in range(len(values) + 2)],
            "body": ["x"] * (len(values) + 2),
            "side": ["liberal", "conservative", *values],
            "subject": ["masks"] * (len(values) + 2),
        }
    )
    with pytest.raises(
        HumanDataError, match=r": 'v11' \(12 rows\), 'v10' \(11 rows\), .*'v02' \(3 rows\) and 2 more values;"
    ):
        ingest(frame, topics=["masks"])


def test_drop_unknown_groups_leaves_them_out_with_a_warning():
    frame = table(
        side=["liberal", "conservative", "Moderate", "conservative", "moderate", "liberal"],
        subject=["masks", "masks", "vaccines", "vaccines", "masks", "vaccines"],
    )
    result = ingest(frame, spec=DROPPING)
    assert result.posts["post_id"].to_list() == ["1", "2", "4", "6"]
    reasons = dict(zip(result.dropped["reason"], result.dropped["rows"], strict=True))
    assert reasons["group not in study"] == 2
    assert result.warnings == [
        "issue 'covid': 2 rows left out because column 'side' (group) holds values that are not groups "
        "of the study (human.covid.drop_unknown_groups): 'Moderate' (1 row), 'moderate' (1 row)"
    ]


def test_users_are_grouped_by_the_matched_group():
    frame = table(
        side=["Liberal", "conservative", "liberal", "conservative", "liberal ", "conservative"],
        subject=["masks", "masks", "vaccines", "vaccines", "masks", "vaccines"],
        uid=["a", "b", "a", "b", "a", "c"],
    )
    spec = replace(SPEC, columns={**COLUMNS, "user": "uid"})
    users = ingest(frame, spec=spec).users
    assert users.select("user", "posts", "group", "reason").rows() == [
        ("a", 3, "liberal", None),
        ("b", 2, "conservative", None),
        ("c", 1, "conservative", None),
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"side": ["liberal", "conservative", "libral", "conservative", "liberal", "liberal"]},
            "column 'side' (group) holds values that are not groups of the study ['liberal', "
            "'conservative'] (even ignoring case and spaces): 'libral' (1 row); fix them in the table",
        ),
        (
            {
                "side": ["liberal", "conservative", "liberal", "liberal", "liberal", "conservative"],
                "subject": ["masks", "masks", "vaccines", "vaccines", "masks", "masks"],
            },
            "topic 'vaccines' has no posts from group 'conservative'; every configured topic",
        ),
    ],
    ids=["unknown-group-value", "topic-without-a-group"],
)
def test_a_data_error_stops_the_job_in_one_line_and_keeps_the_traceback_aside(
    tmp_path, capfd, overrides, message
):
    source = tmp_path / "posts.csv"
    table(**overrides).write_csv(source)
    log = tmp_path / "logs" / "ingest.log"
    with pytest.raises(SystemExit) as exit_:
        run_logged(log, lambda: run_ingest_job(tmp_path, source))
    assert exit_.value.code == 1
    console = capfd.readouterr().err
    assert console.startswith(f"affalign: data error: {source}: ") and message in console, console
    assert console.count("\n") == 1 and "Traceback" not in console, console
    # Snakemake prints the log on failure: it holds the same line and where the traceback is.
    logged = log.read_text()
    assert "Traceback" not in logged and console in logged, logged
    assert f"(traceback for a bug report: {traceback_path(log)})" in logged
    assert "HumanDataError" in traceback_path(log).read_text()
    assert not (tmp_path / "out" / "posts.parquet").exists()


def test_the_job_shows_group_warnings_on_the_console_and_records_the_switch(tmp_path, capfd):
    source = tmp_path / "posts.csv"
    table(
        side=["Liberal", "conservative", "liberal", "conservative", "moderate", "liberal"],
        subject=["masks", "masks", "vaccines", "vaccines", "masks", "vaccines"],
    ).write_csv(source)
    outputs = run_ingest_job(tmp_path, source, drop_unknown_groups=True)
    console = capfd.readouterr().err
    assert "affalign: WARNING: issue 'covid': 1 rows of column 'side' (group) were matched" in console
    assert "affalign: WARNING: issue 'covid': 1 rows left out because column 'side'" in console
    assert read_provenance(outputs["posts"])["drop_unknown_groups"] is True
    assert pl.read_csv(outputs["dropped"]).filter(pl.col("reason") == "group not in study")["rows"][0] == 1


# --- topic values that are not topics of the study ---


def test_topic_values_match_the_study_topics_ignoring_case_and_spaces():
    frame = table(
        side=["liberal", "conservative", "liberal", "conservative", "liberal", "conservative"],
        subject=["Masks", "masks ", "VACCINES", "vaccines", "masks", "Vaccines"],
    )
    result = ingest(frame)
    assert dict(zip(result.posts["post_id"], result.posts["topic"], strict=True)) == {
        "1": "masks",
        "2": "masks",
        "3": "vaccines",
        "4": "vaccines",
        "5": "masks",
        "6": "vaccines",
    }
    assert result.dropped.filter(pl.col("reason") == "topic not in study")["rows"].to_list() == [0]
    assert result.warnings == [
        "issue 'covid': 4 rows of column 'subject' (topic) were matched to the study's topics ignoring "
        "case and spaces: 'Masks' -> masks (1 row), 'VACCINES' -> vaccines (1 row), 'Vaccines' -> "
        "vaccines (1 row), 'masks ' -> masks (1 row)"
    ]


def test_topics_outside_the_study_are_left_out_with_their_values_and_counts():
    frame = table(
        side=["liberal", "conservative", "liberal", "conservative", "liberal", "conservative"],
        subject=["masks", "masks", "schools", "vaccines", "Schools ", "schools"],
    )
    result = ingest(frame, topics=["masks"])
    assert result.posts["post_id"].to_list() == ["1", "2"]
    reasons = dict(zip(result.dropped["reason"], result.dropped["rows"], strict=True))
    assert reasons["topic not in study"] == 4
    assert result.warnings == [
        "issue 'covid': 4 rows of column 'subject' (topic) hold values that are not topics of the study "
        "(issues.covid.topics) and are left out: 'schools' (2 rows), 'Schools ' (1 row), "
        "'vaccines' (1 row)"
    ]


def test_the_job_shows_topic_warnings_in_its_log_and_on_the_console(tmp_path, capfd):
    source = tmp_path / "posts.csv"
    table(side=["liberal", "conservative", "liberal", "conservative", "liberal", "conservative"]).write_csv(
        source
    )
    run_ingest_job(tmp_path, source)
    warning = (
        "WARNING: issue 'covid': 1 rows of column 'subject' (topic) hold values that are not topics of "
        "the study (issues.covid.topics) and are left out: 'schools' (1 row)"
    )
    captured = capfd.readouterr()
    assert warning in captured.out.splitlines()  # the job's log (run_logged sends stdout there)
    assert f"affalign: {warning}" in captured.err.splitlines()  # the console


# --- tables without a single post ---

HEADER = "id,body,side,subject\n"


def empty_tables(folder):
    """A table of each format that has no rows, each with the columns (where it can have any)."""
    (folder / "header.csv").write_text(HEADER)
    (folder / "blank.csv").write_text("")
    pl.DataFrame(schema={name: pl.String for name in COLUMNS.values()}).write_parquet(folder / "none.parquet")
    (folder / "none.jsonl").write_text("")
    (folder / "blank-lines.jsonl").write_text("\n  \n")
    return ["header.csv", "blank.csv", "none.parquet", "none.jsonl", "blank-lines.jsonl"]


def test_tables_without_rows_are_named_with_what_to_do(tmp_path):
    for name in empty_tables(tmp_path):
        with pytest.raises(HumanDataError) as error:
            check_has_rows(tmp_path / name, "covid")
        assert str(error.value) == (
            f"{tmp_path / name}: the table has no posts (0 rows); config key human.covid.path must name a "
            "table with at least one post: check that the export finished (it may have been cut short) "
            "or fix the path"
        )


def test_tables_with_one_row_pass_the_row_check(tmp_path):
    (tmp_path / "one.csv").write_text(HEADER + "1,a,liberal,masks\n")
    table().head(1).write_parquet(tmp_path / "one.parquet")
    (tmp_path / "one.jsonl").write_text("\n" + json.dumps({"id": "1"}) + "\n")
    for name in ("one.csv", "one.parquet", "one.jsonl"):
        check_has_rows(tmp_path / name, "covid")


def test_ingesting_a_frame_without_rows_is_the_same_error():
    with pytest.raises(
        HumanDataError, match=r"^posts\.csv: the table has no posts \(0 rows\); config key human\.covid\.path"
    ):
        ingest(table().clear())


def test_the_ingest_job_checks_for_rows_before_reading(tmp_path):
    """The job does not rely on the pre-run check: an empty table (emptied after the check,
    or a run without it) gets the same message, and no output is written."""
    source = tmp_path / "posts.jsonl"
    source.write_text("")
    with pytest.raises(
        HumanDataError,
        match=r"posts\.jsonl: the table has no posts \(0 rows\); config key human\.covid\.path",
    ):
        run_ingest_job(tmp_path, source)
    assert not (tmp_path / "out").exists()
