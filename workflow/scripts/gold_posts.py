import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from affalign.align import write_gold_posts
from affalign.io import run_logged

run_logged(
    snakemake.log[0],
    lambda: write_gold_posts(snakemake.input[0], list(snakemake.params.labels), snakemake.output[0]),
)
