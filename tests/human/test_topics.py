import polars as pl
import pytest

from affalign.human.topics import apply_policy, assign_topics, match_topics, topic_pattern

TOPICS = {
    "masks": ["mask", "masks", "#maskup", "mask mandate"],
    "vaccines": ["vaccine", "#getvaccinated", "booster"],
    "lockdowns": ["lockdown", "stay at home"],
}


def matched(*texts: str | None) -> list[list[str]]:
    return match_topics(pl.Series(list(texts), dtype=pl.String), TOPICS).to_list()


@pytest.mark.parametrize(
    ("text", "hits"),
    [
        ("Wear a MASK, please.", ["masks"]),
        ("#MaskUp everyone", ["masks"]),
        ("the mask\n   mandate is back", ["masks"]),
        ("Stay  at HOME", ["lockdowns"]),
        ("unmasked and unmasking", []),  # word boundaries: no partial words
        ("#maskupnow", []),  # a hashtag matches whole
        ("maskup without the hash", []),  # '#maskup' matches only the hashtag
        ("#mask is a hashtag of a plain keyword", ["masks"]),  # a plain keyword matches its hashtag
        ("mask_mandate", []),  # underscore is part of a word
        ("Boosters and vaccines", []),  # plural forms only where listed
        ("vaccine, booster", ["vaccines"]),
        ("", []),
    ],
)
def test_word_boundary_case_insensitive_matching(text, hits):
    assert matched(text) == [hits]


def test_topics_come_in_config_order_and_null_text_matches_nothing():
    assert matched("lockdown, then a vaccine, then a mask", None) == [["masks", "vaccines", "lockdowns"], []]


def test_regex_characters_in_keywords_are_literal():
    topics = {"law": ["u.s. law", "c++"], "other": ["a(b"]}
    texts = pl.Series(["US law", "u.s. law here", "uss law", "I like C++.", "a(b)"])
    assert match_topics(texts, topics).to_list() == [[], ["law"], [], ["law"], ["other"]]


def test_unicode_letters_are_word_characters():
    topics = {"masks": ["maske"]}
    texts = pl.Series(["Die Maske!", "Maskenpflicht", "émaske"])
    assert match_topics(texts, topics).to_list() == [["masks"], [], []]


def test_pattern_needs_keywords():
    with pytest.raises(ValueError):
        topic_pattern([])


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("all", [["masks", "vaccines"], ["masks"], []]),
        ("first", [["masks"], ["masks"], []]),
        ("drop", [[], ["masks"], []]),
    ],
)
def test_multiple_topic_policies(policy, expected):
    matches = pl.Series([["masks", "vaccines"], ["masks"], []], dtype=pl.List(pl.String))
    assert apply_policy(matches, policy).to_list() == expected


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown multiple-topic policy"):
        apply_policy(pl.Series([["masks"]]), "random")


def test_assign_topics_keeps_all_matches_next_to_the_assignment():
    frame = assign_topics(pl.Series(["masks and a vaccine", "nothing"]), TOPICS, "first")
    assert frame.to_dict(as_series=False) == {
        "matched": [["masks", "vaccines"], []],
        "assigned": [["masks"], []],
    }
