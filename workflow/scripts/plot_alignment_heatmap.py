import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import polars as pl

from affalign.figures import plot_alignment_heatmap
from affalign.io import run_logged

run_logged(
    snakemake.log[0],
    lambda: plot_alignment_heatmap(
        pl.read_parquet(snakemake.input.alignment),
        pl.read_parquet(snakemake.input.baseline),
        list(snakemake.params.groups),
        f"Affective alignment, classifier {snakemake.wildcards.classifier}",
        snakemake.output[0],
    ),
)
