import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import polars as pl

from affalign.figures import plot_design
from affalign.io import run_logged

run_logged(
    snakemake.log[0],
    lambda: plot_design(
        pl.read_parquet(snakemake.input.summary),
        {int(n): hours for n, hours in snakemake.params.gpu_hours.items()},
        snakemake.params.n_per_shard,
        f"Predicted precision, classifier {snakemake.wildcards.classifier}",
        snakemake.output[0],
    ),
)
