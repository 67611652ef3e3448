import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))

from affalign.generate import Sampling, write_generation_shard
from affalign.jobs import run_logged

shard = snakemake.params.generation
# Operational settings, not part of the shard's content: read from the config so that
# changing them reruns nothing.
operations = snakemake.config["generation"]

run_logged(
    snakemake.log[0],
    lambda: write_generation_shard(
        service_file=snakemake.input.service,
        server_log=snakemake.params.server_log,
        output=snakemake.output[0],
        prompts_file=snakemake.params.prompts,
        global_seed=shard["seed"],
        model=snakemake.wildcards.model,
        model_info=shard,
        issue=snakemake.wildcards.issue,
        issue_name=shard["issue_name"],
        topic=snakemake.wildcards.topic,
        topic_name=shard["topic_name"],
        prompt_type=snakemake.wildcards.prompt_type,
        count=shard["n_per_shard"],
        sampling=Sampling(shard["max_tokens"], shard["temperature"], shard["top_p"]),
        max_in_flight=operations["max_in_flight"],
        server_start_timeout_s=operations["server_start_timeout_s"],
        request_timeout_s=operations["request_timeout_s"],
    ),
)
