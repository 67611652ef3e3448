"""The model service: one vLLM OpenAI-compatible server per model, and its client.

Rule ``serve_model`` (``workflow/rules/generate.smk``) runs ``python -m
affalign.service.server``, which starts vLLM, waits for ``/health`` and writes the
service file ``results/services/{model}.json`` (address, pid, engine); Snakemake keeps it
running while its consumers — the ``generate`` and ``opinion_shard`` jobs — talk to it
through one :class:`~affalign.service.client.ServiceClient` (session, URL, concurrency
limit, server log, watchdog).

* :mod:`~affalign.service.server` — the server process and its lifetime;
* :mod:`~affalign.service.client` — waiting for the service, requests, retries, watchdog;
* :mod:`~affalign.service.prepare_model` — the embedded demo model, prepared once.
"""

from affalign.service.client import ServiceClient, ServiceUnavailable, served_model_provenance

__all__ = ["ServiceClient", "ServiceUnavailable", "served_model_provenance"]
