# A shell rule (not a script) so that Snakemake can stop the service: it signals the
# process it started, and `exec` makes that process the service wrapper itself.
rule serve_model:
    output:
        service("results/services/{model}.json"),
    log:
        "logs/serve_model/{model}.log",
    conda:
        "../envs/generate.yaml"
    threads: 1
    resources:
        gpu=get_model_gpus,
        cpus_per_task=get_model_cpus,
        mem_mb=get_model_mem_mb,
        runtime=get_model_runtime,
    params:
        src=get_package_source,
        python=get_model_python,
        source=get_model_source,
        revision=get_model_revision,
        engine=get_model_engine_json,
        seed=config["seed"],
        server_log="logs/serve_model/{model}.server.log",
        # Operational, not part of any output.
        start_timeout=config["generation"]["server_start_timeout_s"],
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.service.server"
        " --model {wildcards.model} --source {params.source:q} --revision={params.revision:q}"
        " --engine {params.engine:q} --seed {params.seed} --service-file {output:q}"
        " --server-log {params.server_log:q} --start-timeout {params.start_timeout} >> {log:q} 2>&1"


rule generate:
    input:
        service="results/services/{model}.json",
    output:
        "results/generated/{model}/{issue}/{topic}/{prompt_type}.parquet",
    log:
        "logs/generate/{model}/{issue}/{topic}/{prompt_type}.log",
    conda:
        "../envs/generate.yaml"
    # An HTTP client of its model's server: it must not add a core to the service group
    # (a group's cores are the sum of its members'), and it needs little memory.
    threads: 0
    resources:
        mem_mb=200,
    params:
        generation=get_generation_params,
        prompts=config["prompts"],
        server_log="logs/serve_model/{model}.server.log",
        # Finished shards kept by content hash, so that a failed sibling in the service
        # group (Snakemake then removes every member's output) costs no finished work.
        store="results/.shard-store/generated/{model}",
    script:
        "../scripts/generate.py"
