import math
from dataclasses import replace

import polars as pl
import pytest

from affalign.human.ideology import (
    REASON_BETWEEN,
    REASON_FEW_URLS,
    DomainTableError,
    IdeologySettings,
    domain_scores,
    lookup_candidates,
    normalise_domain,
    read_domain_table,
    registrable_domain,
    score_url,
    url_host,
    url_shares,
    user_ideology,
)


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://www.NYTimes.com/x", "nytimes.com"),
        ("http://m.foxnews.com", "foxnews.com"),
        ("https://video.foxnews.com/v/1?x=2#y", "foxnews.com"),
        ("HTTPS://WWW.BBC.CO.UK/news/uk-1", "bbc.co.uk"),
        ("https://news.bbc.co.uk/", "bbc.co.uk"),
        ("https://www.abc.net.au/news", "abc.net.au"),
        ("nytimes.com/2021/section", "nytimes.com"),
        ("www.breitbart.com", "breitbart.com"),
        ("//cnn.com/x", "cnn.com"),
        ("https://user:pw@www.example.com:8443/path", "example.com"),
        ("https://www.example.com./", "example.com"),
        ("http://localhost/x", "localhost"),
        ("http://192.168.0.1/x", "192.168.0.1"),
        ("  https://www.npr.org/x  ", "npr.org"),
    ],
)
def test_registrable_domain_of_urls(url, domain):
    assert normalise_domain(url) == domain


@pytest.mark.parametrize(
    "url", [None, "", "   ", "mailto:someone@nytimes.com", "https://", "https://bad host.com/x"]
)
def test_urls_without_a_usable_host(url):
    assert normalise_domain(url) is None


def test_www_is_stripped_but_other_subdomains_are_kept_in_the_host():
    assert url_host("https://www.NYTimes.com/x") == "nytimes.com"
    assert url_host("http://m.foxnews.com") == "m.foxnews.com"


def test_registrable_domain_rule():
    assert registrable_domain("a.b.c.example.com") == "example.com"
    assert registrable_domain("a.b.example.co.uk") == "example.co.uk"
    assert registrable_domain("co.uk") == "co.uk"
    assert registrable_domain("example") == "example"


def test_lookup_goes_from_the_host_to_the_registrable_domain():
    assert lookup_candidates("a.video.foxnews.com") == [
        "a.video.foxnews.com",
        "video.foxnews.com",
        "foxnews.com",
    ]
    assert lookup_candidates("news.bbc.co.uk") == ["news.bbc.co.uk", "bbc.co.uk"]
    assert lookup_candidates("nytimes.com") == ["nytimes.com"]


def test_most_specific_table_entry_wins():
    scores = {"go.com": 0.0, "abcnews.go.com": -1.0, "foxnews.com": 2.0}
    assert score_url("https://abcnews.go.com/x", scores) == ("go.com", "abcnews.go.com", -1.0)
    assert score_url("https://espn.go.com/x", scores) == ("go.com", "go.com", 0.0)
    assert score_url("http://m.foxnews.com", scores) == ("foxnews.com", "foxnews.com", 2.0)
    assert score_url("https://t.co/abc", scores) == ("t.co", None, None)
    assert score_url("not a url", scores) == (None, None, None)


def table(**columns):
    return pl.DataFrame(columns)


# The domain column and the scale every table below is read with (nothing has a default).
READ = {"domain_column": "domain", "scale": (-2.0, 2.0)}


def test_numeric_scores_with_hosts_normalised():
    frame = table(
        domain=["NYTimes.com", "https://www.foxnews.com/", "abcnews.go.com"], score=["-1", "2", " -0.5 "]
    )
    assert domain_scores(frame, path="bias.csv", **READ, score_column="score") == {
        "nytimes.com": -1.0,
        "foxnews.com": 2.0,
        "abcnews.go.com": -0.5,
    }


def test_categories_are_mapped_and_null_leaves_a_domain_unscored():
    frame = table(domain=["a.com", "b.com", "c.com"], bias=["Left-Center", " right ", "satire"])
    categories = {"left-center": -1, "right": 2, "satire": None}
    scores = domain_scores(frame, path="bias.csv", **READ, category_column="bias", categories=categories)
    assert scores == {"a.com": -1.0, "b.com": 2.0}


@pytest.mark.parametrize(
    ("columns", "kwargs", "message"),
    [
        (
            {"site": ["a.com"], "score": ["1"]},
            {"score_column": "score"},
            r"bias\.csv: column 'domain' \(config key ideology\.domain_columns\.domain\) is missing",
        ),
        (
            {"domain": ["a.com"], "score": ["1"]},
            {"score_column": "lean"},
            r"bias\.csv: column 'lean' \(config key ideology\.domain_columns\.score\) is missing",
        ),
        (
            {"domain": ["a.com", "b.com"], "score": ["1", "left"]},
            {"score_column": "score"},
            r"bias\.csv: column 'score' row 2: 'left' is not a number",
        ),
        (
            {"domain": ["a.com", "b.com"], "score": ["1", ""]},
            {"score_column": "score"},
            r"bias\.csv: column 'score' \(score\) is empty in row 2",
        ),
        (
            {"domain": ["a.com", "b.com", "c.com"], "score": [1.0, 0.0, 3.5]},
            {"score_column": "score"},
            r"bias\.csv: column 'score' row 3: score 3\.5 is outside the scale \[-2, 2\]",
        ),
        (
            {"domain": ["a.com"], "score": [math.nan]},
            {"score_column": "score"},
            r"bias\.csv: column 'score' row 1: score nan is outside the scale",
        ),
        (
            {"domain": ["a.com", "b.com"], "score": [True, False]},
            {"score_column": "score"},
            r"bias\.csv: column 'score' row 1: True is not a number",
        ),
        (
            {"domain": ["a.com", None], "score": ["1", "1"]},
            {"score_column": "score"},
            r"bias\.csv: column 'domain' is empty in row 2",
        ),
        (
            {"domain": ["a.com", "not a domain"], "score": ["1", "1"]},
            {"score_column": "score"},
            r"bias\.csv: column 'domain' row 2: 'not a domain' is not a domain",
        ),
        (
            {"domain": ["a.com", "b.com", "www.A.com"], "score": ["1", "1", "-1"]},
            {"score_column": "score"},
            r"bias\.csv: domain 'a\.com' is listed in rows 1 and 3 \(column 'domain'\) with different scores",
        ),
        (
            {"domain": ["a.com"], "bias": ["far-left"]},
            {"category_column": "bias", "categories": {"left": -2}},
            r"bias\.csv: column 'bias' row 1: category 'far-left' is not in "
            r"ideology\.categories \(\['left'\]\)",
        ),
        (
            {"domain": ["a.com"], "bias": ["left"]},
            {"category_column": "bias", "categories": {"left": -5}},
            r"ideology\.categories\.left = -5 is outside ideology\.scale",
        ),
        (
            {"domain": ["a.com"], "bias": ["left"], "score": ["1"]},
            {"category_column": "bias", "score_column": "score", "categories": {"left": -1}},
            r"give exactly one of",
        ),
    ],
)
def test_bad_domain_tables_name_file_column_and_row(columns, kwargs, message):
    with pytest.raises(DomainTableError, match=message):
        domain_scores(table(**columns), path="bias.csv", **{**READ, **kwargs})


def test_identical_duplicates_are_fine():
    frame = table(domain=["a.com", "www.a.com"], score=["1", "1.0"])
    assert domain_scores(frame, path="bias.csv", **READ, score_column="score") == {"a.com": 1.0}


def test_read_domain_table_from_csv(tmp_path):
    path = tmp_path / "bias.csv"
    path.write_text("domain,score\nnytimes.com,-1\nfoxnews.com,abc\n")
    with pytest.raises(DomainTableError, match=rf"{path}: column 'score' row 2: 'abc' is not a number"):
        read_domain_table(path, score_column="score", **READ)


# Every setting given, as the schema-validated config gives them (nothing has a default).
IDEOLOGY = IdeologySettings(scale=(-2.0, 2.0), min_scored_urls=1, liberal_max=-0.5, conservative_min=0.5)
SCORES = {"left.com": -2.0, "leftish.com": -1.0, "center.com": 0.0, "rightish.com": 1.0, "right.com": 2.0}


def ideology_of(posts: dict[str, list[list[str]]], **settings) -> dict[str, tuple]:
    frame = pl.DataFrame(
        {
            "user": [user for user, lists in posts.items() for _ in lists],
            "urls": [urls for lists in posts.values() for urls in lists],
        },
        schema={"user": pl.String, "urls": pl.List(pl.String)},
    )
    users = user_ideology(frame.select("user"), url_shares(frame, SCORES), replace(IDEOLOGY, **settings))
    return {
        row["user"]: (row["scored_urls"], row["score"], row["group"], row["reason"])
        for row in users.to_dicts()
    }


def test_thresholds_are_inclusive_and_the_middle_gets_no_group():
    users = ideology_of(
        {
            "a": [["https://left.com/1"], ["https://center.com/2"]],  # mean -1
            "b": [["https://leftish.com/1", "https://center.com/1"]],  # mean -0.5: on the threshold
            "c": [["https://center.com/1", "https://leftish.com/2", "https://rightish.com/3"]],  # 0
            "d": [["https://rightish.com/1"], ["https://center.com/1"]],  # 0.5: on the threshold
            "e": [["https://right.com/1"], ["https://t.co/xyz"]],  # unscored URL is not averaged
        }
    )
    assert users == {
        "a": (2, -1.0, "liberal", None),
        "b": (2, -0.5, "liberal", None),
        "c": (3, 0.0, None, REASON_BETWEEN),
        "d": (2, 0.5, "conservative", None),
        "e": (1, 2.0, "conservative", None),
    }


def test_minimum_scored_urls():
    users = ideology_of(
        {
            "one": [["https://left.com/1", "https://t.co/1", "https://unknown.org/2"]],
            "two": [["https://left.com/1"], ["https://leftish.com/2"]],
            "none": [[], []],
        },
        min_scored_urls=2,
    )
    assert users["one"] == (1, -2.0, None, REASON_FEW_URLS)
    assert users["two"] == (2, -1.5, "liberal", None)
    assert users["none"] == (0, None, None, REASON_FEW_URLS)


def test_a_url_listed_twice_in_a_post_counts_once_but_twice_across_posts():
    users = ideology_of(
        {
            "u": [
                ["https://right.com/1", "https://right.com/1"],
                ["https://right.com/1"],
                ["https://left.com/x"],
            ]
        },
        min_scored_urls=3,
    )
    assert users["u"] == (3, 2 / 3, "conservative", None)


def test_custom_scale_and_thresholds():
    users = ideology_of(
        {"u": [["https://leftish.com/1"]], "v": [["https://rightish.com/1"]]},
        scale=(-2.0, 2.0),
        liberal_max=-1.5,
        conservative_min=1.0,
    )
    assert users["u"][2:] == (None, REASON_BETWEEN)
    assert users["v"][2] == "conservative"


def test_settings_problems_name_the_config_keys():
    assert IDEOLOGY.problems() == []
    problems = replace(IDEOLOGY, liberal_max=1.0, conservative_min=0.0).problems()
    assert problems == ["ideology.liberal_max 1 must be below ideology.conservative_min 0"]
    assert "ideology.conservative_min 3 is outside ideology.scale [-2, 2]" in (
        replace(IDEOLOGY, conservative_min=3.0).problems()
    )
    assert (
        replace(IDEOLOGY, scale=(1.0, -1.0), liberal_max=0.0, conservative_min=0.5)
        .problems()[0]
        .startswith("ideology.scale [1, -1] must be")
    )


@pytest.mark.parametrize(("name", "content"), [("bias.csv", "domain,score\n"), ("bias.jsonl", "\n")])
def test_a_domain_table_without_rows_is_named(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DomainTableError) as error:
        read_domain_table(path, score_column="score", **READ)
    assert str(error.value) == (
        f"{path}: the domain table has no rows; config key ideology.domain_table must name a table with "
        "at least one domain and its score: check the file or fix the path"
    )
