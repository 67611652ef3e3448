"""The model service: one vLLM OpenAI-compatible server per model, and its client.

Rule ``serve_model`` (``workflow/rules/generate.smk``) runs ``python -m
affalign.service.server``, which starts vLLM, waits for ``/health`` and writes the
service file ``results/services/{model}.json`` (address, pid, engine); Snakemake keeps it
running while its consumers — the ``generate`` and ``opinion_shard`` jobs — talk to it
through one :class:`~affalign.service.client.ServiceClient` (session, URL, concurrency
limit, server log, watchdog).

* :mod:`~affalign.service.server` — the server process and its lifetime;
* :mod:`~affalign.service.metrics` — the server's ``/metrics`` sampled during a session, and
  how full it was while generating (for the job account, :mod:`~affalign.service.account`);
* :mod:`~affalign.service.client` — waiting for the service, requests, retries, watchdog;
* :mod:`~affalign.service.consumer` — the one skeleton of a consumer: its flags and options,
  and around each shard the client, the shard store (first, then the output; a shard that
  cannot be written fails after its siblings have finished), the wait and the timing;
* :mod:`~affalign.service.endpoint` — OpenAI-compatible endpoints as models (no server of
  ours): the same client with a fixed base URL, a key from an environment variable, limits
  across jobs, request budgets;
* :mod:`~affalign.service.prepare_model` — the embedded demo model, prepared once.
"""

from affalign.service.account import write_job_account
from affalign.service.client import (
    RequestRejected,
    ServiceClient,
    ServiceUnavailable,
    retry_after_seconds,
    served_model_provenance,
)
from affalign.service.consumer import (
    CONSUMER_MODULES,
    ConsumerOptions,
    FinishedShard,
    ShardWork,
    ShardWriteError,
    Timing,
    add_consumer_flags,
    consumer_parser,
    publish_shard,
    restore_shard,
    run_consumer_job,
    run_shard,
    shard_timing,
)
from affalign.service.endpoint import (
    EndpointClient,
    EndpointError,
    EndpointSpec,
    RequestPacer,
    budget_problems,
    endpoint_config_problems,
)

__all__ = [
    "CONSUMER_MODULES",
    "ConsumerOptions",
    "EndpointClient",
    "EndpointError",
    "EndpointSpec",
    "FinishedShard",
    "RequestPacer",
    "RequestRejected",
    "ServiceClient",
    "ServiceUnavailable",
    "ShardWork",
    "ShardWriteError",
    "Timing",
    "add_consumer_flags",
    "budget_problems",
    "consumer_parser",
    "endpoint_config_problems",
    "publish_shard",
    "restore_shard",
    "retry_after_seconds",
    "run_consumer_job",
    "run_shard",
    "served_model_provenance",
    "shard_timing",
    "write_job_account",
]
