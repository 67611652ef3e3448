import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from affalign.align import write_robustness
from affalign.io import run_logged

run_logged(
    snakemake.log[0],
    lambda: write_robustness(
        list(snakemake.params.classifiers),
        {
            "model_summary": list(snakemake.input.model_summary),
            "tendency": list(snakemake.input.tendency),
            "steerability": list(snakemake.input.steerability),
        },
        {
            name: [path for path in snakemake.input.human if f"/classify/{name}/human/" in path]
            for name in snakemake.params.classifiers
        },
        snakemake.output[0],
        snakemake.params.alpha,
        snakemake.params.confidence,
        snakemake.params.seed,
        snakemake.params.label_map,
    ),
)
