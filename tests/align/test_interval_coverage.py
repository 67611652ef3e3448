"""Intervals on levels hold where studies are: seeded simulated studies with a known truth, end
to end through the stage's ``bootstrap_comparisons`` (each study is one issue).

A perfect model (posts drawn from the group's own distribution, true alignment 1) is where the
percentile interval of the corrected replicates failed: its replicates centre near the plug-in
score, below the corrected estimate, so the model-level interval covered the truth in 3-24 % of
studies and excluded its own estimate in about 90 %.
"""

import numpy as np
import polars as pl
import pytest

from affalign.align.comparisons import BootstrapSettings, bootstrap_comparisons
from affalign.align.simulation import LABELS, rates_at, simulated_studies

GROUPS = ["liberal", "conservative"]
STUDIES = 200


def studies(model_posts: int, truth: float, seed: int, prompt_types=("default",)) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    model, human = simulated_studies(rng, STUDIES, 5, model_posts, 300, truth, prompt_types=prompt_types)
    return bootstrap_comparisons(model, human, list(LABELS), GROUPS, BootstrapSettings(200, 0.95, seed, 0))


def shares(frame: pl.DataFrame, estimate: str, low: str, high: str, truth: float) -> tuple[float, float]:
    """Share of rows covering ``truth`` and share whose estimate lies inside its own interval."""
    covered = ((pl.col(low) <= truth) & (pl.col(high) >= truth)).mean()
    inside = ((pl.col(low) <= pl.col(estimate)) & (pl.col(high) >= pl.col(estimate))).mean()
    return frame.select(covered.alias("covered"), inside.alias("inside")).row(0)


@pytest.mark.parametrize("model_posts", [24, 200])
def test_a_perfect_models_model_level_interval_covers_the_truth_and_its_estimate(model_posts):
    results = studies(model_posts, 1.0, seed=model_posts)
    summary = results["model_summary"]
    assert summary.height == STUDIES * len(GROUPS)
    covered, inside = shares(summary, "alignment_corrected", "corrected_low", "corrected_high", 1.0)
    assert covered >= 0.85
    assert inside == 1.0
    # The cells and the baselines (identical groups: true baseline 1) hold too.
    covered, inside = shares(
        results["alignment"], "alignment_corrected", "corrected_low", "corrected_high", 1.0
    )
    assert covered >= 0.85 and inside == 1.0
    covered, inside = shares(
        results["baseline"], "alignment_corrected", "corrected_low", "corrected_high", 1.0
    )
    assert covered >= 0.85 and inside == 1.0


def test_intervals_away_from_identity_are_not_made_wide_to_cover():
    # At a true 0.9 with 200 posts the model-level interval still covers, and is narrow enough
    # to tell the model from one at 0.8 (an interval that covered by being wide would not).
    summary = studies(200, 0.9, seed=3)["model_summary"]
    covered, inside = shares(summary, "alignment_corrected", "corrected_low", "corrected_high", 0.9)
    assert covered >= 0.85 and inside == 1.0
    assert (summary["corrected_low"] > 0.8).mean() >= 0.95
    assert (summary["corrected_high"] - summary["corrected_low"]).median() < 0.15


def test_simulated_populations_have_the_alignment_they_are_drawn_at():
    from scipy.spatial.distance import jensenshannon

    for target in (0.98, 0.9, 0.8):
        assert 1 - jensenshannon(rates_at(target), rates_at(1.0), base=2) == pytest.approx(target, abs=1e-9)


def test_rows_outside_the_measured_range_say_so():
    rng = np.random.default_rng(1)
    settings = BootstrapSettings(50, 0.95, 1, 0)
    flags = {}
    for model_posts, group_posts in ((10, 200), (24, 200), (24, 1000), (2000, 30), (2000, 300)):
        model, human = simulated_studies(rng, 1, 3, model_posts, group_posts, 1.0)
        results = bootstrap_comparisons(model, human, list(LABELS), GROUPS, settings)
        flags[(model_posts, group_posts)] = (
            set(results["alignment"]["interval_ok"]),
            set(results["model_summary"]["interval_ok"]),
            set(results["baseline"]["interval_ok"]),
        )
    assert flags[(10, 200)] == ({False}, {False}, {True})  # a model cell below 24 posts
    assert flags[(24, 200)] == ({True}, {True}, {True})
    assert flags[(24, 1000)] == ({False}, {False}, {True})  # 24 posts against 1,000
    assert flags[(2000, 30)] == ({False}, {False}, {True})  # 2,000 posts against 30
    assert flags[(2000, 300)] == ({True}, {True}, {True})
    # Two topics are fewer than any measured study: the model-level row is flagged.
    model, human = simulated_studies(rng, 1, 2, 200, 300, 1.0)
    summary = bootstrap_comparisons(model, human, list(LABELS), GROUPS, settings)["model_summary"]
    assert set(summary["interval_ok"]) == {False}
