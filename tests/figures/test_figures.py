"""Figures are drawn, deterministic, and tolerate undefined scores (no labelled posts)."""

import numpy as np
import polars as pl

from affalign.figures import plots as figures

KEYS = {"model": ["m", "m"], "prompt_type": ["default", "default"], "issue": ["i", "i"], "topic": ["t", "t"]}


def alignment(value):
    return pl.DataFrame({**KEYS, "group": ["liberal", "conservative"], "alignment": [value, value]},
                        schema_overrides={"alignment": pl.Float64})  # fmt: skip


def baseline(value):
    return pl.DataFrame(
        {"issue": ["i"], "topic": ["t"], "alignment": [value]}, schema_overrides={"alignment": pl.Float64}
    )


def tendency(value):
    columns = ["tendency", "tendency_low", "tendency_high", "p_value"]
    frame = {"model": ["m"], "issue": ["i"], "prompt_type": ["default"], **{c: [value] for c in columns}}
    return pl.DataFrame(frame, schema_overrides=dict.fromkeys(columns, pl.Float64))


def steerability(value):
    columns = ["steerability", "steerability_low", "steerability_high"]
    frame = {"model": ["m"], "issue": ["i"], "group": ["liberal"], **{c: [value] for c in columns}}
    return pl.DataFrame(frame, schema_overrides=dict.fromkeys(columns, pl.Float64))


def draw_all(tmp_path, value):
    groups = ["liberal", "conservative"]
    figures.plot_alignment_heatmap(alignment(value), baseline(value), groups, "t", tmp_path / "heatmap.png")
    figures.plot_baseline_comparison(alignment(value), baseline(value), "t", tmp_path / "baseline.png")
    figures.plot_tendency(tendency(value), "t", tmp_path / "tendency.png")
    figures.plot_steerability(steerability(value), "t", tmp_path / "steer.png")
    return {path.name: path.read_bytes() for path in tmp_path.glob("*.png")}


def test_figures_with_scores_and_without(tmp_path):
    drawn = draw_all(tmp_path / "a", 0.7)
    assert len(drawn) == 4 and all(len(data) > 3000 for data in drawn.values())
    assert len(draw_all(tmp_path / "b", None)) == 4


def test_figures_are_deterministic(tmp_path):
    assert draw_all(tmp_path / "a", 0.4) == draw_all(tmp_path / "b", 0.4)


# --- figures agree with their tables -------------------------------------------------------


def bars_and_whiskers(figure):
    """Per axis: drawn bars as (position, value) and interval whiskers as (position, low, high,
    dashed), read back from the figure's artists."""
    from matplotlib.patches import Rectangle

    found = []
    for axis in figure.axes:
        bars, whiskers = [], []
        for patch in axis.patches:
            if not isinstance(patch, Rectangle) or not np.isfinite(patch.get_height() * patch.get_width()):
                continue
            if patch.get_y() == 0:  # vertical bar from 0
                bars.append((patch.get_x() + patch.get_width() / 2, patch.get_height()))
            else:  # horizontal bar from 0
                bars.append((patch.get_y() + patch.get_height() / 2, patch.get_x() + patch.get_width()))
        for collection in axis.collections:
            if collection.get_gid() != figures.INTERVAL_GID:
                continue
            dashed = collection.get_label() == figures.UNMEASURED_LABEL
            for (x0, y0), (x1, y1) in collection.get_segments():
                if x0 == x1:  # vertical whisker at x
                    whiskers.append((x0, min(y0, y1), max(y0, y1), dashed))
                else:
                    whiskers.append((y0, min(x0, x1), max(x0, x1), dashed))
        found.append((bars, whiskers))
    return found


def stage_tables():
    """The stage's own tables for small simulated studies: perfect models with 24 posts, where
    the old percentile intervals lay below their own estimates."""
    from affalign.align.comparisons import BootstrapSettings, bootstrap_comparisons
    from affalign.align.simulation import LABELS, simulated_studies

    rng = np.random.default_rng(4)
    model, human = simulated_studies(
        rng, 2, 5, 24, 300, 1.0, prompt_types=("default", "liberal", "conservative")
    )
    return bootstrap_comparisons(
        model, human, list(LABELS), ["liberal", "conservative"], BootstrapSettings(200, 0.95, 4, 0)
    )


def test_every_bar_lies_within_its_whisker_in_the_comparison_figures():
    tables = stage_tables()
    drawn = {
        "baseline": figures.baseline_comparison_figure(
            tables["alignment"], tables["baseline"], "t", tables["model_summary"]
        ),
        "tendency": figures.tendency_figure(tables["tendency"], "t"),
        "steerability": figures.steerability_figure(tables["steerability"], "t"),
    }
    expected_whiskers = {
        "baseline": tables["model_summary"].height,
        "tendency": tables["tendency"].height,
        "steerability": 2 * tables["steerability"].height,
    }
    for name, figure in drawn.items():
        axes = bars_and_whiskers(figure)
        whisker_count = sum(len(whiskers) for _, whiskers in axes)
        assert whisker_count == expected_whiskers[name], name
        for bars, whiskers in axes:
            for position, value in bars:
                matching = [w for w in whiskers if abs(w[0] - position) < 1e-9]
                assert len(matching) <= 1
                for _, low, high, _ in matching:
                    assert low <= value <= high, (name, position, value, low, high)
        matplotlib_close(figure)
    # The published panels (top row of the baseline figure) carry no whisker at all.
    top = bars_and_whiskers(drawn["baseline"])[: len(drawn["baseline"].axes) // 2]
    assert all(bars and not whiskers for bars, whiskers in top)


def test_whiskers_of_rows_outside_the_measured_range_are_dashed():
    frame = pl.DataFrame(
        {
            "model": ["m", "m"],
            "issue": ["i", "i"],
            "prompt_type": ["default", "liberal"],
            "tendency_corrected": [0.1, -0.05],
            "corrected_low": [0.0, -0.2],
            "corrected_high": [0.2, 0.1],
            "p_bh": [0.5, 0.5],
            "interval_ok": [True, False],
        }
    )
    figure = figures.tendency_figure(frame, "t")
    [(_, whiskers)] = bars_and_whiskers(figure)
    by_position = {position: dashed for position, _, _, dashed in whiskers}
    assert by_position == {0.0: False, 1.0: True}
    # The whiskers are the table's bounds, not clipped to the bars.
    assert sorted((low, high) for _, low, high, _ in whiskers) == [(-0.2, 0.1), (0.0, 0.2)]
    matplotlib_close(figure)


def matplotlib_close(figure):
    import matplotlib.pyplot as plt

    plt.close(figure)
