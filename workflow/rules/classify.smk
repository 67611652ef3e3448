rule classify_generated:
    input:
        get_model_shards,
    output:
        [
            f"results/classify/{{classifier}}/generated/{{model}}/{suffix}"
            for suffix in shard_suffixes()
        ],
    log:
        "logs/classify/{classifier}/generated/{model}.log",
    benchmark:
        "results/benchmarks/classify/{classifier}/generated/{model}.tsv"
    conda:
        "../envs/classify.yaml"
    resources:
        gpu=get_classifier_gpus,
        slurm_partition=get_classifier_partition,
    params:
        src=unrecorded(get_package_source),
        python=unrecorded(get_classifier_python),
        spec=json_params(get_classifier_spec),
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.classify.job"
        " --classifier {wildcards.classifier} --spec {params.spec:q}"
        " --inputs {input:q} --outputs {output:q} --log {log:q}"


rule classify_human:
    input:
        "results/human/{issue}/posts.parquet",
    output:
        "results/classify/{classifier}/human/{issue}.parquet",
    log:
        "logs/classify/{classifier}/human/{issue}.log",
    benchmark:
        "results/benchmarks/classify/{classifier}/human/{issue}.tsv"
    conda:
        "../envs/classify.yaml"
    resources:
        gpu=get_classifier_gpus,
        slurm_partition=get_classifier_partition,
    params:
        src=unrecorded(get_package_source),
        python=unrecorded(get_classifier_python),
        spec=json_params(get_classifier_spec),
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.classify.job"
        " --classifier {wildcards.classifier} --spec {params.spec:q}"
        " --inputs {input:q} --outputs {output:q} --log {log:q}"
