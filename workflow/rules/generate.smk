rule serve_model:
    output:
        service("results/services/{model}.json"),
    params:
        source=get_model_source,
        revision=get_model_revision,
        engine=get_model_engine,
        seed=config["seed"],
        server_log="logs/serve_model/{model}.server.log",
    log:
        "logs/serve_model/{model}.log",
    threads: 1
    resources:
        gpu=get_model_gpus,
    conda:
        "../envs/generate.yaml"
    script:
        "../scripts/serve_model.py"


rule generate:
    input:
        service="results/services/{model}.json",
    output:
        "results/generated/{model}/{issue}/{topic}/{prompt_type}.parquet",
    params:
        generation=get_generation_params,
        prompts=config["prompts"],
        server_log="logs/serve_model/{model}.server.log",
    log:
        "logs/generate/{model}/{issue}/{topic}/{prompt_type}.log",
    # An HTTP client of its model's server: it must not add a core to the service group.
    threads: 0
    conda:
        "../envs/generate.yaml"
    script:
        "../scripts/generate.py"
