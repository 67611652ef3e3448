rule survey_table:
    input:
        unpack(get_survey_inputs),
    output:
        "results/opinions/survey/{survey}.parquet",
    log:
        "logs/survey_table/{survey}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=get_survey_settings,
    script:
        "../scripts/survey_table.py"


# A consumer of its model's service, like generate: it joins the model's service group,
# so the server is loaded once per model for generation and survey questions alike. It
# reads the questions, not the survey table, so editing human answers rescores nothing.
rule opinion_shard:
    input:
        service="results/services/{model}.json",
        questions=get_survey_questions,
    output:
        "results/opinions/{model}/{survey}/{context}.parquet",
    log:
        "logs/opinion_shard/{model}/{survey}/{context}.log",
    conda:
        "../envs/generate.yaml"
    threads: 0
    resources:
        mem_mb=200,
        slurm_partition=get_model_partition,
    params:
        src=unrecorded(get_package_source),
        python=unrecorded(get_model_python),
        opinion=json_params(get_opinion_params),
        server_log="logs/serve_model/{model}.server.log",
        # Finished shards kept by content hash (see rule generate).
        store=unrecorded(opinion_store),
        # Operational, not part of the shard: changing them reruns nothing (affalign.config.params).
        operations=get_consumer_operations,
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.opinions.job"
        " --model {wildcards.model} --survey {wildcards.survey} --context {wildcards.context}"
        " --settings {params.opinion:q} --questions {input.questions:q}"
        " --service-file {input.service:q} --server-log {params.server_log:q}"
        " --store {params.store:q} --output {output:q} --log {log:q} {params.operations}"


rule opinion_tables:
    input:
        shards=get_all_opinion_shards,
        surveys=expand("results/opinions/survey/{survey}.parquet", survey=SURVEYS),
    output:
        alignment="results/opinions/question_alignment.parquet",
        representativeness="results/opinions/representativeness.parquet",
        representativeness_csv=report(
            "results/opinions/representativeness.csv",
            caption="../report/representativeness.rst",
            category="Opinions",
        ),
        baselines="results/opinions/human_baselines.parquet",
        baselines_csv=report(
            "results/opinions/human_baselines.csv",
            caption="../report/human_baselines.rst",
            category="Opinions",
        ),
        steerability="results/opinions/steerability.parquet",
        steerability_csv=report(
            "results/opinions/steerability.csv",
            caption="../report/opinion_steerability.rst",
            category="Opinions",
        ),
        refusals="results/opinions/refusals.parquet",
        refusals_csv=report(
            "results/opinions/refusals.csv",
            caption="../report/refusals.rst",
            category="Opinions",
        ),
        steerability_slope="results/opinions/steerability_slope.parquet",
        steerability_slope_csv=report(
            "results/opinions/steerability_slope.csv",
            caption="../report/opinion_steerability_slope.rst",
            category="Opinions",
        ),
        differential_steerability="results/opinions/differential_steerability.parquet",
        differential_steerability_csv=report(
            "results/opinions/differential_steerability.csv",
            caption="../report/differential_steerability.rst",
            category="Opinions",
        ),
        consistency="results/opinions/consistency.parquet",
        consistency_csv=report(
            "results/opinions/consistency.csv",
            caption="../report/consistency.rst",
            category="Opinions",
        ),
    log:
        "logs/opinion_tables.log",
    conda:
        "../envs/analysis.yaml"
    params:
        # Resampling settings and the global seed: changing them recomputes the tables only.
        inference=lambda wildcards: {
            "replicates": OPINIONS["bootstrap_replicates"],
            "confidence": OPINIONS["confidence"],
            "permutations": OPINIONS["permutations"],
            "seed": config["seed"],
        },
    script:
        "../scripts/opinion_tables.py"


rule plot_representativeness:
    input:
        representativeness="results/opinions/representativeness.parquet",
        baselines="results/opinions/human_baselines.parquet",
        steerability="results/opinions/steerability.parquet",
        differential="results/opinions/differential_steerability.parquet",
    output:
        heatmap=report(
            "results/figures/opinions/representativeness_heatmap.png",
            caption="../report/representativeness_heatmap.rst",
            category="Figures",
            subcategory="opinions",
        ),
        steering=report(
            "results/figures/opinions/steering.png",
            caption="../report/opinion_steering.rst",
            category="Figures",
            subcategory="opinions",
        ),
    log:
        "logs/plot_representativeness.log",
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/plot_representativeness.py"


# An endpoint model's opinion shards: the endpoint called directly (no service), with the
# log-probability method configured or detected before the run (results/endpoints/).
rule opinion_shard_endpoint:
    input:
        questions=get_survey_questions,
    output:
        "results/opinions/{model}/{survey}/{context}.parquet",
    log:
        "logs/opinion_shard/{model}/{survey}/{context}.log",
    wildcard_constraints:
        model=ENDPOINT_MODELS,
    conda:
        "../envs/generate.yaml"
    threads: 1
    resources:
        **ENDPOINT_RESOURCES,
        mem_mb=200,
    params:
        src=unrecorded(get_package_source),
        python=unrecorded(get_model_python),
        opinion=json_params(get_opinion_params),
        detected=lambda wildcards: detection_file(wildcards.model),
        store=unrecorded(opinion_store),
        # The endpoint's limits and key variable too (affalign.config.params).
        operations=get_consumer_operations,
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.opinions.job"
        " --model {wildcards.model} --survey {wildcards.survey} --context {wildcards.context}"
        " --settings {params.opinion:q} --questions {input.questions:q}"
        " --detected {params.detected:q} --store {params.store:q} --output {output:q}"
        " --log {log:q} {params.operations}"


ruleorder: opinion_shard_endpoint > opinion_shard
