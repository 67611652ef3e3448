import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from affalign.human import normalise_posts, read_table
from affalign.jobs import run_logged
from affalign.shards import write_csv, write_shard


def ingest():
    source = snakemake.input[0]
    posts, dropped = normalise_posts(
        read_table(source),
        path=source,
        issue=snakemake.wildcards.issue,
        columns=snakemake.params.columns,
        topics=snakemake.params.topics,
        groups=snakemake.params.groups,
    )
    provenance = {"stage": "human", "source": source, "columns": dict(snakemake.params.columns)}
    write_shard(posts, snakemake.output.posts, provenance)
    write_csv(dropped, snakemake.output.dropped)
    print(posts.group_by(["topic", "group"]).len().sort(["topic", "group"]))
    print(dropped)


run_logged(snakemake.log[0], ingest)
