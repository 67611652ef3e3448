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
    # GPUs, GPU type and flags from models.<m>.resources (common.smk).
    resources:
        **SERVER_RESOURCES,
    params:
        src=get_package_source,
        python=get_model_python,
        source=get_model_source,
        revision=get_model_revision,
        engine=get_model_engine_json,
        seed=config["seed"],
        server_log="logs/serve_model/{model}.server.log",
        # One line per server session, read by rule job_account.
        sessions="logs/serve_model/{model}.sessions.jsonl",
        # Operational, not part of any output.
        start_timeout=config["generation"]["server_start_timeout_s"],
        device=get_runtime_device,
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.service.server"
        " --model {wildcards.model} --source {params.source:q} --revision={params.revision:q}"
        " --engine {params.engine:q} --seed {params.seed} --service-file {output:q}"
        " --server-log {params.server_log:q} --sessions-file {params.sessions:q}"
        " --start-timeout {params.start_timeout}"
        " --device {params.device} >> {log:q} 2>&1"


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
        slurm_partition=get_model_partition,
    params:
        src=unrecorded(get_package_source),
        python=unrecorded(get_model_python),
        generation=json_params(get_generation_params),
        prompts=config["prompts"],
        server_log="logs/serve_model/{model}.server.log",
        # Finished shards kept by content hash, so that a failed sibling in the service
        # group (Snakemake then removes every member's output) costs no finished work.
        # Recorded, as it always was (opinion shards' is not: see opinion_store); making
        # the two alike would rerun every finished shard of one kind.
        store="results/.shard-store/generated/{model}",
        # Operational, not part of the shard: changing them reruns nothing (affalign.config.params).
        operations=get_consumer_operations,
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.generate.job"
        " --model {wildcards.model} --issue {wildcards.issue} --topic {wildcards.topic}"
        " --prompt-type {wildcards.prompt_type} --settings {params.generation:q}"
        " --prompts {params.prompts:q} --service-file {input.service:q}"
        " --server-log {params.server_log:q} --store {params.store:q}"
        " --output {output:q} --log {log:q} {params.operations}"


# An endpoint model's shards (models.<m>.endpoint): no service; the job calls the endpoint
# itself, holding its share of the endpoint's resource (see common.smk), so the endpoint's
# limits hold across all of its jobs at once. Its shards are kept in the shard store too.
rule generate_endpoint:
    output:
        "results/generated/{model}/{issue}/{topic}/{prompt_type}.parquet",
    log:
        "logs/generate/{model}/{issue}/{topic}/{prompt_type}.log",
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
        generation=json_params(get_generation_params),
        prompts=config["prompts"],
        store="results/.shard-store/generated/{model}",
        # The endpoint's limits and key variable too (affalign.config.params).
        operations=get_consumer_operations,
    shell:
        "PYTHONPATH={params.src:q} exec {params.python:q} -m affalign.generate.job"
        " --model {wildcards.model} --issue {wildcards.issue} --topic {wildcards.topic}"
        " --prompt-type {wildcards.prompt_type} --settings {params.generation:q}"
        " --prompts {params.prompts:q} --store {params.store:q}"
        " --output {output:q} --log {log:q} {params.operations}"


ruleorder: generate_endpoint > generate


# What each model's server job spent its time on (load, generation, idle tail), from the
# shards' provenance and the servers' session records (see affalign.service.account).
rule job_account:
    input:
        get_all_model_shards,
    output:
        table="results/services/job_account.parquet",
        csv=report(
            "results/services/job_account.csv",
            caption="../report/job_account.rst",
            category="Job account",
        ),
    log:
        "logs/job_account.log",
    conda:
        "../envs/analysis.yaml"
    params:
        sessions=expand("logs/serve_model/{model}.sessions.jsonl", model=MODELS),
    script:
        "../scripts/job_account.py"
