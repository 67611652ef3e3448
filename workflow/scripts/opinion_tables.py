import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from affalign.io import run_logged
from affalign.opinions import InferenceSettings, run_opinion_tables

run_logged(
    snakemake.log[0],
    lambda: run_opinion_tables(
        shards=list(snakemake.input.shards),
        surveys=list(snakemake.input.surveys),
        outputs=dict(snakemake.output.items()),
        inference=InferenceSettings(**snakemake.params.inference),
    ),
)
