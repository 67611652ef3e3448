import sys
from pathlib import Path

# scriptdir is workflow/rules/../scripts (the rule file's folder joined with the script's
# relative path): resolve it before climbing to the checkout's src/.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))

from affalign.io.jobs import run_logged
from affalign.opinions.client import (
    OpinionShard,
    Scoring,
    read_logprob_support,
    write_opinion_shard,
)
from affalign.opinions.positional import Steering
from affalign.service import EndpointClient, EndpointSpec

settings = snakemake.params.opinion
shard = OpinionShard(
    model=snakemake.wildcards.model,
    survey=snakemake.wildcards.survey,
    context=snakemake.wildcards.context,
    steering=Steering.from_config(settings["steering"]) if settings["steering"] else None,
)
scoring = Scoring(
    mode=settings["logprobs"],
    top_logprobs=settings["top_logprobs"],
    chat=settings["chat"],
    chat_template_kwargs=settings["chat_template_kwargs"],
)
# Operational settings shared with the generate consumers: changing them reruns nothing.
operations = snakemake.config["generation"]
# An endpoint model (rule opinion_shard_endpoint): its base URL instead of a service file,
# and the log-probability method detected before the run when it is left to "auto".
entry = snakemake.config["models"][shard.model]
endpoint = EndpointSpec.from_config(shard.model, entry) if "endpoint" in entry else None
client = EndpointClient(endpoint) if endpoint else None
detected = read_logprob_support(snakemake.params.get("detected"), endpoint) if endpoint else None

run_logged(
    snakemake.log[0],
    lambda: write_opinion_shard(
        shard,
        model_info=settings,
        questions_file=snakemake.input.questions,
        scoring=scoring,
        service_file=snakemake.input.get("service"),
        server_log=snakemake.params.get("server_log", ""),
        output=snakemake.output[0],
        max_in_flight=operations["max_in_flight"],
        server_start_timeout_s=operations["server_start_timeout_s"],
        request_timeout_s=operations["request_timeout_s"],
        client=client,
        detected=detected,
    ),
)
