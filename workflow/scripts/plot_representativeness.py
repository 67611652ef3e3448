import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

import polars as pl

from affalign.figures.plots import plot_representativeness_heatmap
from affalign.io.jobs import run_logged

run_logged(
    snakemake.log[0],
    lambda: plot_representativeness_heatmap(
        pl.read_parquet(snakemake.input.representativeness),
        pl.read_parquet(snakemake.input.baselines),
        "Opinion representativeness (OpinionQA-style surveys)",
        snakemake.output[0],
    ),
)
