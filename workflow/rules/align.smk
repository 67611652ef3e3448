rule align:
    input:
        generated=get_all_generated,
        generated_affect=get_all_generated_affect,
        human=expand("results/human/{issue}/posts.parquet", issue=ISSUES),
        human_affect=get_all_human_affect,
    output:
        distributions="results/align/{classifier}/distributions.parquet",
        alignment="results/align/{classifier}/alignment.parquet",
        alignment_csv=report(
            "results/align/{classifier}/alignment.csv",
            caption="../report/alignment.rst",
            category="Alignment",
            subcategory="{classifier}",
        ),
        matrix=report(
            "results/align/{classifier}/alignment_matrix.csv",
            caption="../report/alignment_matrix.rst",
            category="Alignment",
            subcategory="{classifier}",
        ),
        baseline="results/align/{classifier}/partisan_baseline.parquet",
        baseline_csv=report(
            "results/align/{classifier}/partisan_baseline.csv",
            caption="../report/partisan_baseline.rst",
            category="Alignment",
            subcategory="{classifier}",
        ),
        dropped="results/align/{classifier}/dropped.csv",
        tendency="results/align/{classifier}/liberal_tendency.parquet",
        tendency_csv=report(
            "results/align/{classifier}/liberal_tendency.csv",
            caption="../report/liberal_tendency.rst",
            category="Alignment",
            subcategory="{classifier}",
        ),
        steerability="results/align/{classifier}/steerability.parquet",
        steerability_csv=report(
            "results/align/{classifier}/steerability.csv",
            caption="../report/steerability.rst",
            category="Alignment",
            subcategory="{classifier}",
        ),
        below_baseline="results/align/{classifier}/below_baseline.csv",
        model_summary="results/align/{classifier}/model_summary.parquet",
        model_summary_csv=report(
            "results/align/{classifier}/model_summary.csv",
            caption="../report/model_summary.rst",
            category="Alignment",
            subcategory="{classifier}",
        ),
        sensitivity=report(
            "results/align/{classifier}/sensitivity.csv",
            caption="../report/sensitivity.rst",
            category="Alignment",
            subcategory="{classifier}",
        ),
    log:
        "logs/align/{classifier}.log",
    benchmark:
        "results/benchmarks/align/{classifier}.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        settings=get_align_params,
    script:
        "../scripts/align.py"


# Do the study's conclusions survive a classifier swap? Every pair of classifiers: rank
# correlation of model-level corrected alignment, sign agreement of significant findings.
rule robustness:
    input:
        model_summary=expand(
            "results/align/{classifier}/model_summary.parquet", classifier=CLASSIFIERS
        ),
        tendency=expand(
            "results/align/{classifier}/liberal_tendency.parquet",
            classifier=CLASSIFIERS,
        ),
        steerability=expand(
            "results/align/{classifier}/steerability.parquet", classifier=CLASSIFIERS
        ),
        human=expand(
            "results/classify/{classifier}/human/{issue}.parquet",
            classifier=CLASSIFIERS,
            issue=ISSUES,
        ),
    output:
        report(
            "results/align/robustness.csv",
            caption="../report/robustness.rst",
            category="Alignment",
        ),
    log:
        "logs/align/robustness.log",
    conda:
        "../envs/analysis.yaml"
    params:
        classifiers=CLASSIFIERS,
        alpha=config["align"]["alpha"],
        confidence=config["align"]["confidence"],
        seed=config["seed"],
        label_map=config["robustness"]["label_map"],
    script:
        "../scripts/robustness.py"


# Labels a reader can judge: a seeded sample of human and generated posts with the labels
# every classifier gave them, side by side.
rule label_samples:
    input:
        human=expand("results/human/{issue}/posts.parquet", issue=ISSUES),
        generated=get_all_generated,
        affect=lambda wildcards: [
            path
            for classifier in CLASSIFIERS
            for path in [
                *expand(
                    "results/classify/{classifier}/human/{issue}.parquet",
                    classifier=classifier,
                    issue=ISSUES,
                ),
                *(p for model in MODELS for p in affect_shards(classifier, model)),
            ]
        ],
    output:
        report(
            "results/align/label_samples.csv",
            caption="../report/label_samples.rst",
            category="Alignment",
        ),
    log:
        "logs/align/label_samples.log",
    conda:
        "../envs/analysis.yaml"
    params:
        classifiers=CLASSIFIERS,
        per_cell=3,
        seed=config["seed"],
    script:
        "../scripts/label_samples.py"


# A classifier against a gold file of human-labelled posts (classifiers.<c>.gold): its posts
# as the classify jobs read human posts, then per-label F1 with bootstrap intervals.
rule gold_posts:
    input:
        get_gold_file,
    output:
        "results/gold/{classifier}/posts.parquet",
    log:
        "logs/gold/{classifier}.log",
    wildcard_constraints:
        classifier=GOLD_CLASSIFIER_NAMES,
    conda:
        "../envs/analysis.yaml"
    params:
        labels=get_classifier_labels,
    script:
        "../scripts/gold_posts.py"


rule gold_f1:
    input:
        gold="results/gold/{classifier}/posts.parquet",
        predicted="results/classify/{classifier}/gold.parquet",
    output:
        report(
            "results/align/{classifier}/gold_f1.csv",
            caption="../report/gold_f1.rst",
            category="Alignment",
            subcategory="{classifier}",
        ),
    log:
        "logs/align/{classifier}/gold_f1.log",
    wildcard_constraints:
        classifier=GOLD_CLASSIFIER_NAMES,
    conda:
        "../envs/analysis.yaml"
    params:
        confidence=config["align"]["confidence"],
        seed=config["seed"],
    script:
        "../scripts/gold_f1.py"
