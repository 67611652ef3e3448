import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from affalign.io.jobs import run_logged
from affalign.opinions.tables import run_opinion_tables

run_logged(
    snakemake.log[0],
    lambda: run_opinion_tables(
        shards=list(snakemake.input.shards),
        surveys=list(snakemake.input.surveys),
        outputs=dict(snakemake.output.items()),
    ),
)
