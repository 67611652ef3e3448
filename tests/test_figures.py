"""Figures are drawn, deterministic, and tolerate undefined scores (no labelled posts)."""

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
