import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from affalign.classify.run import classify_files
from affalign.io.jobs import run_logged

run_logged(
    snakemake.log[0],
    lambda: classify_files(
        snakemake.wildcards.classifier,
        snakemake.params.spec,
        list(snakemake.input),
        list(snakemake.output),
    ),
)
