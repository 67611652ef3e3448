import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from affalign.generate.prompts import ShardSpec
from affalign.generate.shards import Sampling, write_generation_shard
from affalign.io.jobs import run_logged
from affalign.service import EndpointClient, EndpointSpec

settings = snakemake.params.generation
shard = ShardSpec(
    global_seed=settings["seed"],
    model=snakemake.wildcards.model,
    kind=settings["kind"],
    issue=snakemake.wildcards.issue,
    issue_name=settings["issue_name"],
    topic=snakemake.wildcards.topic,
    topic_name=settings["topic_name"],
    prompt_type=snakemake.wildcards.prompt_type,
    count=settings["n_per_shard"],
)
# Operational settings, not part of the shard's content: read from the config so that
# changing them reruns nothing.
operations = snakemake.config["generation"]
# An endpoint model (rule generate_endpoint) is reached at its base URL, not through a
# service file; its limits and key variable are operational too.
entry = snakemake.config["models"][shard.model]
client = EndpointClient(EndpointSpec.from_config(shard.model, entry)) if "endpoint" in entry else None

run_logged(
    snakemake.log[0],
    lambda: write_generation_shard(
        shard,
        model_info=settings,
        service_file=snakemake.input.get("service"),
        server_log=snakemake.params.get("server_log", ""),
        output=snakemake.output[0],
        prompts_file=snakemake.params.prompts,
        sampling=Sampling(settings["max_tokens"], settings["temperature"], settings["top_p"]),
        max_in_flight=operations["max_in_flight"],
        server_start_timeout_s=operations["server_start_timeout_s"],
        request_timeout_s=operations["request_timeout_s"],
        store=snakemake.params.store,
        client=client,
    ),
)
