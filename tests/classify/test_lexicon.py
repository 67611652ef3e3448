import pytest

from affalign.classify import lexicon
from affalign.classify.run import normalise_text


@pytest.fixture(scope="module")
def nrc():
    return lexicon.load("nrc-emotion")


@pytest.fixture(scope="module")
def mfd():
    return lexicon.load("mfd2")


def test_nrc_has_the_eight_emotions_only(nrc):
    assert nrc.labels == lexicon.NRC_EMOTIONS
    assert "positive" not in {label for labels in nrc.entries.values() for label in labels}


def test_nrc_crafted_sentences(nrc):
    counts = lexicon.match_counts(nrc, "I am furious and afraid about this")
    assert counts["anger"] >= 1 and counts["fear"] >= 1
    assert counts["joy"] == 0
    table = lexicon.classify_texts(nrc, ["What a happy wonderful day", "the the the", None])
    assert table["y_joy"].to_list() == [True, False, False]
    assert table["p_joy"][0] >= 2


def test_mfd2_labels_phrases_and_double_categories(mfd):
    assert len(mfd.labels) == 10 and "care.virtue" in mfd.labels and "sanctity.vice" in mfd.labels
    counts = lexicon.match_counts(mfd, "We defend civil rights and show compassion")
    assert counts["fairness.virtue"] >= 1  # the phrase "civil rights"
    assert counts["care.virtue"] >= 1
    doubles = [entry for entry, labels in mfd.entries.items() if len(labels) == 2]
    assert len(doubles) > 20


def test_parse_dic_merges_categories_and_rejects_unknown_ids():
    text = "%\n1\tcare.virtue\n2\tcare.vice\n%\nhurt\t2\nhelp\t1\nhelp\t2\nmake amends\t1\n"
    labels, entries = lexicon.parse_dic(text)
    assert labels == ("care.virtue", "care.vice")
    assert entries[("help",)] == {"care.virtue", "care.vice"}
    assert entries[("make", "amends")] == {"care.virtue"}
    with pytest.raises(lexicon.LexiconError, match="no known category"):
        lexicon.parse_dic("%\n1\tcare.virtue\n%\nhurt\t7\n")


def test_normalisation_drops_urls_and_mentions_keeps_hashtag_words():
    assert normalise_text("Joy! @happy_bot see https://x.org/a #GoodNews") == "Joy! see GoodNews"
    assert normalise_text(None) == ""
