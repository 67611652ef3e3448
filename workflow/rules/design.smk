rule design:
    input:
        human=expand("results/human/{issue}/posts.parquet", issue=ISSUES),
        human_affect=get_all_human_affect,
    output:
        cells="results/design/{classifier}/cells.parquet",
        cells_csv="results/design/{classifier}/cells.csv",
        summary="results/design/{classifier}/summary.parquet",
        summary_csv=report(
            "results/design/{classifier}/summary.csv",
            caption="../report/design.rst",
            category="Design",
            subcategory="{classifier}",
        ),
    log:
        "logs/design/{classifier}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=get_design_params,
    script:
        "../scripts/design.py"
