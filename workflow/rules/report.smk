rule plot_alignment_heatmap:
    input:
        alignment="results/align/{classifier}/alignment.parquet",
        baseline="results/align/{classifier}/partisan_baseline.parquet",
    output:
        report(
            "results/figures/{classifier}/alignment_heatmap.png",
            caption="../report/alignment_heatmap.rst",
            category="Figures",
            subcategory="{classifier}",
        ),
    log:
        "logs/plot_alignment_heatmap/{classifier}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        groups=GROUPS,
    script:
        "../scripts/plot_alignment_heatmap.py"


rule plot_comparisons:
    input:
        alignment="results/align/{classifier}/alignment.parquet",
        baseline="results/align/{classifier}/partisan_baseline.parquet",
        tendency="results/align/{classifier}/liberal_tendency.parquet",
        steerability="results/align/{classifier}/steerability.parquet",
        distributions="results/align/{classifier}/distributions.parquet",
        model_summary="results/align/{classifier}/model_summary.parquet",
    output:
        baseline=report(
            "results/figures/{classifier}/baseline_comparison.png",
            caption="../report/baseline_comparison.rst",
            category="Figures",
            subcategory="{classifier}",
        ),
        tendency=report(
            "results/figures/{classifier}/liberal_tendency.png",
            caption="../report/liberal_tendency_figure.rst",
            category="Figures",
            subcategory="{classifier}",
        ),
        steerability=report(
            "results/figures/{classifier}/steerability.png",
            caption="../report/steerability_figure.rst",
            category="Figures",
            subcategory="{classifier}",
        ),
        distributions=report(
            "results/figures/{classifier}/label_distributions.png",
            caption="../report/label_distributions.rst",
            category="Figures",
            subcategory="{classifier}",
        ),
    log:
        "logs/plot_comparisons/{classifier}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        example=get_example_topic,
    script:
        "../scripts/plot_comparisons.py"


rule plot_design:
    input:
        summary="results/design/{classifier}/summary.parquet",
    output:
        report(
            "results/figures/{classifier}/design.png",
            caption="../report/design_figure.rst",
            category="Design",
            subcategory="{classifier}",
        ),
    log:
        "logs/plot_design/{classifier}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        n_per_shard=config["generation"]["n_per_shard"],
        gpu_hours=lambda wildcards: gpu_hours_by_shard_size(config),
    script:
        "../scripts/plot_design.py"
