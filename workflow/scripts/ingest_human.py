import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from affalign.io.files import atomic_write_text
from affalign.human.ingest import SourceSpec, ingest_posts, quality_report
from affalign.io import file_sha256, read_table
from affalign.human.ideology import IdeologySettings, domain_table_options, read_domain_table
from affalign.io.jobs import run_logged
from affalign.io.parquet import write_csv, write_table


def ingest():
    source = snakemake.input.table
    issue = snakemake.wildcards.issue
    params = snakemake.params
    spec = SourceSpec.from_config({"columns": dict(params.columns), **params.source})
    assignment = dict(params.topic_assignment)
    settings = {
        "columns": dict(params.columns),
        "group_from": spec.group_from,
        "topic_from": spec.topic_from,
        "topic_assignment": assignment,
    }
    scores, ideology = None, None
    if spec.group_from == "domains":
        domains = snakemake.input.domains
        scores = read_domain_table(domains, **domain_table_options(params.ideology))
        ideology = IdeologySettings.from_config(params.ideology)
        settings["ideology"] = dict(params.ideology)
        settings["domain_table_sha256"] = file_sha256(domains)
        print(f"{domains}: {len(scores)} scored domains")
    result = ingest_posts(
        read_table(source),
        path=source,
        issue=issue,
        spec=spec,
        topics=dict(params.keywords) if spec.topic_from == "keywords" else list(params.topics),
        groups=params.groups,
        multiple_topics=assignment.get("multiple_topics", "all"),
        min_posts_per_group=assignment.get("min_posts_per_group", 0),
        domain_scores=scores,
        ideology=ideology,
    )
    for warning in result.warnings:
        print(f"WARNING: {warning}")
        # Also on the console, which the job's log redirection does not reach.
        print(f"affalign: WARNING: {warning}", file=sys.__stderr__)
    provenance = {
        "stage": "human",
        "source": source,
        "source_sha256": file_sha256(source),
        **settings,
        "excluded_topics": result.excluded,
    }
    write_table(result.posts, snakemake.output.posts, provenance)
    write_csv(result.dropped, snakemake.output.dropped)
    write_csv(result.users, snakemake.output.users)
    write_csv(result.quality, snakemake.output.quality)
    atomic_write_text(
        snakemake.output.report,
        quality_report(result, issue=issue, source=source, settings=settings),
    )
    print(result.quality)
    print(result.dropped)


run_logged(snakemake.log[0], ingest)
