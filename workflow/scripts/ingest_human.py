import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from affalign.human import IngestParams, run_ingest
from affalign.io import run_logged

params = snakemake.params
run_logged(
    snakemake.log[0],
    lambda: run_ingest(
        issue=snakemake.wildcards.issue,
        table=snakemake.input.table,
        outputs=dict(snakemake.output.items()),
        params=IngestParams(
            source=params.source,
            topics=params.topics,
            keywords=params.keywords,
            groups=params.groups,
            topic_assignment=params.topic_assignment,
            ideology=params.ideology,
        ),
        domain_table=snakemake.input.get("domains"),
    ),
)
