import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import polars as pl

from affalign.figures import plot_opinion_steering, plot_representativeness_heatmap
from affalign.io import run_logged


def plot():
    plot_representativeness_heatmap(
        pl.read_parquet(snakemake.input.representativeness),
        pl.read_parquet(snakemake.input.baselines),
        "Opinion representativeness (OpinionQA-style surveys)",
        snakemake.output.heatmap,
    )
    plot_opinion_steering(
        pl.read_parquet(snakemake.input.steerability),
        pl.read_parquet(snakemake.input.differential),
        "Opinion steering: best of three vs differential",
        snakemake.output.steering,
    )


run_logged(snakemake.log[0], plot)
