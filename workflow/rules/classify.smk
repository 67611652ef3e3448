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


# A classifier with a gold file (classifiers.<c>.gold) labels the gold posts through the
# same job as human posts; rule gold_f1 (align.smk) scores them against the gold labels.
use rule classify_human as classify_gold with:
    input:
        "results/gold/{classifier}/posts.parquet",
    output:
        "results/classify/{classifier}/gold.parquet",
    log:
        "logs/classify/{classifier}/gold.log",
    benchmark:
        "results/benchmarks/classify/{classifier}/gold.tsv"
    wildcard_constraints:
        classifier=GOLD_CLASSIFIER_NAMES,


# LLM classifiers (classifiers.<c>.type: llm): each judge gets its own server, whose
# consumers are the classification jobs of every LLM classifier it judges for. Not the
# generation server: Snakemake reruns every consumer of a service that runs (dag.py,
# update_needrun), so a judge sharing its generation server would regenerate that model's
# shards (and reclassify them with every classifier) whenever a prompt or label changed.
rule serve_judge:
    output:
        service("results/services/judge/{model}.json"),
    log:
        "logs/serve_judge/{model}.log",
    wildcard_constraints:
        model=JUDGE_NAMES,
    conda:
        "../envs/generate.yaml"
    threads: 1
    resources:
        **SERVER_RESOURCES,
    params:
        src=get_package_source,
        python=get_model_python,
        source=get_model_source,
        revision=get_model_revision,
        engine=get_model_engine_json,
        seed=config["seed"],
        server_log="logs/serve_judge/{model}.server.log",
        sessions="logs/serve_judge/{model}.sessions.jsonl",
        start_timeout=config["generation"]["server_start_timeout_s"],
        device=get_runtime_device,
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.service.server"
        " --model {wildcards.model} --source {params.source:q} --revision={params.revision:q}"
        " --engine {params.engine:q} --seed {params.seed} --service-file {output:q}"
        " --server-log {params.server_log:q} --sessions-file {params.sessions:q}"
        " --start-timeout {params.start_timeout}"
        " --device {params.device} >> {log:q} 2>&1"


rule classify_generated_llm:
    input:
        service=judge_service,
        shards=get_model_shards,
    output:
        [
            f"results/classify/{{classifier}}/generated/{{model}}/{suffix}"
            for suffix in shard_suffixes()
        ],
    log:
        "logs/classify/{classifier}/generated/{model}.log",
    wildcard_constraints:
        classifier=LLM_CLASSIFIER_NAMES,
    conda:
        "../envs/generate.yaml"
    # An HTTP client of the judge's server (see rule generate).
    threads: 0
    resources:
        mem_mb=200,
        slurm_partition=judge_partition,
    params:
        src=unrecorded(get_package_source),
        python=unrecorded(get_model_python),
        settings=json_params(get_llm_classifier_settings),
        server_log=unrecorded(judge_server_log),
        store=unrecorded(lambda w: f"results/.shard-store/classify/{w.classifier}"),
        operations=lambda wildcards: consumer_operations(config),
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.classify.llm_job"
        " --classifier {wildcards.classifier} --settings {params.settings:q}"
        " --generator {wildcards.model} --inputs {input.shards:q} --outputs {output:q}"
        " --service-file {input.service:q} --server-log {params.server_log:q}"
        " --store {params.store:q} --log {log:q} {params.operations}"


rule classify_human_llm:
    input:
        service=judge_service,
        posts="results/human/{issue}/posts.parquet",
    output:
        "results/classify/{classifier}/human/{issue}.parquet",
    log:
        "logs/classify/{classifier}/human/{issue}.log",
    wildcard_constraints:
        classifier=LLM_CLASSIFIER_NAMES,
    conda:
        "../envs/generate.yaml"
    threads: 0
    resources:
        mem_mb=200,
        slurm_partition=judge_partition,
    params:
        src=unrecorded(get_package_source),
        python=unrecorded(get_model_python),
        settings=json_params(get_llm_classifier_settings),
        server_log=unrecorded(judge_server_log),
        store=unrecorded(lambda w: f"results/.shard-store/classify/{w.classifier}"),
        operations=lambda wildcards: consumer_operations(config),
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.classify.llm_job"
        " --classifier {wildcards.classifier} --settings {params.settings:q}"
        " --inputs {input.posts:q} --outputs {output:q}"
        " --service-file {input.service:q} --server-log {params.server_log:q}"
        " --store {params.store:q} --log {log:q} {params.operations}"


use rule classify_human_llm as classify_gold_llm with:
    input:
        service=judge_service,
        posts="results/gold/{classifier}/posts.parquet",
    output:
        "results/classify/{classifier}/gold.parquet",
    log:
        "logs/classify/{classifier}/gold.log",


# An endpoint judge (models.<m>.endpoint): no serve_judge and no service group; each job
# calls the endpoint itself, holding its share of the endpoint's resource (see common.smk),
# as generate_endpoint does, so the endpoint's limits hold across all of its jobs at once.
rule classify_generated_llm_endpoint:
    input:
        get_model_shards,
    output:
        [
            f"results/classify/{{classifier}}/generated/{{model}}/{suffix}"
            for suffix in shard_suffixes()
        ],
    log:
        "logs/classify/{classifier}/generated/{model}.log",
    wildcard_constraints:
        classifier=ENDPOINT_LLM_CLASSIFIER_NAMES,
    conda:
        "../envs/generate.yaml"
    threads: 1
    resources:
        **JUDGE_ENDPOINT_RESOURCES,
        mem_mb=200,
    params:
        src=unrecorded(get_package_source),
        python=unrecorded(get_model_python),
        settings=json_params(get_llm_classifier_settings),
        store=unrecorded(lambda w: f"results/.shard-store/classify/{w.classifier}"),
        # The endpoint's limits and key variable too (affalign.config.params).
        operations=get_judge_operations,
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.classify.llm_job"
        " --classifier {wildcards.classifier} --settings {params.settings:q}"
        " --generator {wildcards.model} --inputs {input:q} --outputs {output:q}"
        " --store {params.store:q} --log {log:q} {params.operations}"


rule classify_human_llm_endpoint:
    input:
        "results/human/{issue}/posts.parquet",
    output:
        "results/classify/{classifier}/human/{issue}.parquet",
    log:
        "logs/classify/{classifier}/human/{issue}.log",
    wildcard_constraints:
        classifier=ENDPOINT_LLM_CLASSIFIER_NAMES,
    conda:
        "../envs/generate.yaml"
    threads: 1
    resources:
        **JUDGE_ENDPOINT_RESOURCES,
        mem_mb=200,
    params:
        src=unrecorded(get_package_source),
        python=unrecorded(get_model_python),
        settings=json_params(get_llm_classifier_settings),
        store=unrecorded(lambda w: f"results/.shard-store/classify/{w.classifier}"),
        operations=get_judge_operations,
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.classify.llm_job"
        " --classifier {wildcards.classifier} --settings {params.settings:q}"
        " --inputs {input:q} --outputs {output:q}"
        " --store {params.store:q} --log {log:q} {params.operations}"


use rule classify_human_llm_endpoint as classify_gold_llm_endpoint with:
    input:
        "results/gold/{classifier}/posts.parquet",
    output:
        "results/classify/{classifier}/gold.parquet",
    log:
        "logs/classify/{classifier}/gold.log",


ruleorder: classify_generated_llm > classify_generated
ruleorder: classify_human_llm > classify_human
ruleorder: classify_generated_llm_endpoint > classify_generated
ruleorder: classify_human_llm_endpoint > classify_human
ruleorder: classify_gold_llm > classify_gold
ruleorder: classify_gold_llm_endpoint > classify_gold
