"""The design job: precision predicted from the human posts alone, before any model runs.

The predictions are checked against what the align stage then delivers, in seeded simulated
studies with a known truth (affalign.design.validation): half-widths within 15 % of the
realized mean at 25 and 200 posts per cell, and power at the predicted minimum detectable
effect within 80 ± 7 %. The target itself runs from the human posts without any model, and
``affalign plan`` prints precision next to cost.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from conftest import job_counts, run_affalign, run_snakemake, write_config

from affalign.align.simulation import LABELS, Populations, simulated_studies
from affalign.config.plan import PrecisionOption, target_line
from affalign.design import DesignSettings, predict_design
from affalign.design.validation import (
    Lab,
    realized_halfwidths,
    realized_steering_power,
    realized_tendency_power,
)

LAB = Lab()  # 10 topics, 300 posts per group cell, groups at a true 0.8, n_per_shard 25


@pytest.fixture(scope="module")
def predicted() -> pl.DataFrame:
    return LAB.predicted().filter(pl.col("group") == "liberal")


def at(predicted: pl.DataFrame, n_model: int, column: str) -> float:
    return predicted.filter(pl.col("n_model") == n_model)[column].item()


@pytest.mark.parametrize("n_model", [25, 200])
def test_predicted_half_widths_are_what_the_stage_then_delivers(predicted, n_model):
    cell, level = realized_halfwidths(LAB, n_model, studies=100, seed=n_model)
    assert at(predicted, n_model, "cell_halfwidth") == pytest.approx(cell, rel=0.15)
    assert at(predicted, n_model, "model_level_halfwidth") == pytest.approx(level, rel=0.15)


def test_predictions_follow_the_cell_size(predicted):
    # A prediction that ignored the model's cell size would fail this (and the test above).
    widths = predicted.sort("n_model")["model_level_halfwidth"].to_list()
    assert widths == sorted(widths, reverse=True) and widths[0] > 2 * widths[-1]
    assert predicted.height == 4 and set(predicted["n_model"]) == {25, 50, 100, 200}


def test_power_at_the_predicted_minimum_detectable_effects_is_80_percent(predicted):
    tendency = at(predicted, 50, "mde_tendency")
    power, estimated = realized_tendency_power(LAB, 50, tendency, studies=300, seed=3)
    assert 0.73 <= power <= 0.87, (tendency, power, estimated)
    steering = at(predicted, 50, "mde_steerability")
    power, estimated = realized_steering_power(LAB, 50, steering, studies=300, seed=4)
    assert 0.73 <= power <= 0.87, (steering, power, estimated)
    # Half the effect is detected far less often: the MDE is not a generous bound.
    power, _ = realized_tendency_power(LAB, 50, tendency / 2, studies=300, seed=5)
    assert power < 0.5


def test_three_topics_cannot_reach_alpha_and_more_topics_buy_detection():
    rng = np.random.default_rng(2)
    _, human = simulated_studies(
        rng, 1, 3, 1, 200, 1.0, populations=Populations(conservative_rates=LAB.conservative_rates())
    )
    summary = predict_design(human, LABELS, DesignSettings(50, draws=20, replicates=100))["summary"]
    configured = summary.filter(pl.col("configured_topics"))
    assert set(configured["n_topics"]) == {3}
    # Two-sided sign flips over 3 topics cannot go below p = 0.25.
    assert configured["mde_tendency"].is_nan().all() and configured["mde_steerability"].is_nan().all()
    more = summary.filter(~pl.col("configured_topics") & (pl.col("n_model") == 400))
    assert set(more["n_topics"]) == {6} and (more["mde_tendency"] < 0.25).all()
    assert configured["model_level_halfwidth"].is_finite().all()


def test_target_halfwidth_picks_the_smallest_size_that_reaches_it():
    options = [PrecisionOption(n, hours, 0.2, width, *[float("nan")] * 4)
               for n, hours, width in ((24, 1.0, 0.12), (48, 2.0, 0.08), (96, 4.0, 0.05))]  # fmt: skip
    assert "n_per_shard 48 reaches 0.080 (2.00 GPU-hours" in target_line(options, 0.09)
    assert "no option reaches it (n_per_shard 96 gives 0.050)" in target_line(options, 0.01)


def test_the_design_target_runs_from_human_posts_alone_and_plan_prints_precision_and_cost(study):
    workdir, config = study
    configfile = write_config(workdir / "c.yaml", {**config, "design": {"draws": 20}})
    target = "results/design/nrc-emotion/summary.csv"

    before = run_affalign("plan", "--configfile", str(configfile), "--directory", str(workdir))
    assert before.returncode == 0, before.stderr
    assert "no design table (results/design/nrc-emotion/summary.parquet)" in before.stdout
    assert f"snakemake --cores 2 {target}" in before.stdout

    dry = run_snakemake(workdir, "--dry-run", "--cores", "2", target, configfile=configfile)
    assert dry.returncode == 0, dry.stderr
    assert job_counts(dry.stdout) == {"ingest_human": 2, "classify_human": 2, "design": 1, "total": 5}

    run = run_snakemake(workdir, "--cores", "2", target, configfile=configfile)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = pl.read_csv(workdir / target)
    assert set(summary["n_model"]) == {24, 48, 96, 192}
    assert summary["model_level_halfwidth"].drop_nulls().drop_nans().len() > 0

    after = run_affalign(
        "plan", "--configfile", str(configfile), "--directory", str(workdir), "--target-halfwidth", "0.5"
    )
    assert after.returncode == 0, after.stderr
    lines = after.stdout.splitlines()
    (header,) = [line for line in lines if line.strip().startswith("n_per_shard  gpu_h")]
    rows = [line.split() for line in lines[lines.index(header) + 1 :][:4]]
    assert [row[0] for row in rows] == ["24", "48", "96", "192"] and rows[0][1] == "*"
    hours = [
        float([cell for cell in row if cell != "*"][1]) for row in rows
    ]  # GPU-hours grow with the cell size
    assert hours == sorted(hours) and hours[-1] > hours[0]
    assert "target model-level half-width 0.5: n_per_shard 24 reaches" in after.stdout
