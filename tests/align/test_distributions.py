import polars as pl
import pytest

from affalign.align.distributions import label_distributions
from affalign.classify import NONE_LABEL

LABELS = ["anger", "joy"]


def posts(flags, topic="t"):
    return pl.DataFrame(
        {
            "topic": [topic] * len(flags),
            "y_anger": [a for a, _ in flags],
            "y_joy": [j for _, j in flags],
        }
    )


def test_counts_posts_per_label_and_normalises():
    table = label_distributions(posts([(1, 1), (1, 0), (0, 0), (1, 0)]), ["topic"], LABELS)
    assert table["label"].cast(pl.String).to_list() == ["anger", "joy"]
    assert table["count"].to_list() == [3, 1]
    assert table["n_posts"].to_list() == [4, 4]
    assert table["p"].to_list() == pytest.approx([0.75, 0.25])


def test_none_bin_counts_unlabelled_posts():
    table = label_distributions(posts([(1, 1), (0, 0), (0, 0)]), ["topic"], LABELS, none_bin=True)
    counts = dict(zip(table["label"].cast(pl.String), table["count"], strict=True))
    assert counts == {"anger": 1, "joy": 1, NONE_LABEL: 2}
    assert table["p"].sum() == pytest.approx(1.0)


def test_cell_without_labels_has_no_distribution():
    empty = label_distributions(posts([(0, 0), (0, 0)]), ["topic"], LABELS)
    assert empty["p"].null_count() == 2
