rule ingest_human:
    input:
        get_human_table,
    output:
        posts="results/human/{issue}/posts.parquet",
        dropped="results/human/{issue}/dropped.csv",
    log:
        "logs/ingest_human/{issue}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        columns=get_human_columns,
        topics=get_issue_topics,
        groups=GROUPS,
    script:
        "../scripts/ingest_human.py"
