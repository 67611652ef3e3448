"""How classified posts name their labels: the columns of an affect table.

An affect table (one per shard or human table, written by the classify stage) has one
boolean column ``y_<label>`` per label (does the post carry it) and one numeric column
``p_<label>`` (the classifier's score). The align stage reads the ``y_`` columns.
"""

from __future__ import annotations

NONE_LABEL = "none"


def label_column(label: str) -> str:
    """Name of the boolean column that says whether a post carries ``label``."""
    return f"y_{label}"


def score_column(label: str) -> str:
    """Name of the numeric column that holds the classifier's score for ``label``."""
    return f"p_{label}"
