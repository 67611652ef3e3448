import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

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
