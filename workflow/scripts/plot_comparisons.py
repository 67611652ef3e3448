import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

import polars as pl

import affalign.figures as figures
from affalign.io import run_logged


def plot():
    classifier = snakemake.wildcards.classifier
    alignment = pl.read_parquet(snakemake.input.alignment)
    figures.plot_baseline_comparison(
        alignment,
        pl.read_parquet(snakemake.input.baseline),
        f"Models against the partisan baseline, classifier {classifier}",
        snakemake.output.baseline,
        summary=pl.read_parquet(snakemake.input.model_summary),
    )
    figures.plot_tendency(
        pl.read_parquet(snakemake.input.tendency),
        f"Liberal tendency, classifier {classifier}",
        snakemake.output.tendency,
    )
    figures.plot_steerability(
        pl.read_parquet(snakemake.input.steerability),
        f"Steerability, classifier {classifier}",
        snakemake.output.steerability,
    )
    example = snakemake.params.example
    figures.plot_label_distributions(
        pl.read_parquet(snakemake.input.distributions),
        example["issue"],
        example["topic"],
        f"Label distributions, classifier {classifier}",
        snakemake.output.distributions,
    )


run_logged(snakemake.log[0], plot)
