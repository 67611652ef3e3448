"""OpenAI-compatible endpoints as models: a server that already runs (a lab's vLLM, SGLang
or TGI on another allocation, a shared inference service, a hosted API).

A model entry with ``endpoint:`` (``models.<m>.endpoint`` in the config) names the base URL,
the served model name, the *name* of the environment variable that holds the API key, and
the endpoint's limits. No ``serve_model`` job runs for it: its shard jobs talk to the
endpoint through :class:`EndpointClient`, the one service client
(:class:`~affalign.service.client.ServiceClient`) with its hooks set for a fixed base URL:
authorisation, a requests-per-minute pace, error messages that name the key's variable
(never its value), and provenance from the endpoint's ``/v1/models`` and the answers'
``system_fingerprint``.

Limits across jobs: every shard job of an endpoint takes ``job_concurrency`` units of the
Snakemake resource :attr:`EndpointSpec.resource` (``endpoint_<model>``), whose total the
workflow sets to ``max_concurrency``; so Snakemake never runs more of them at once than
keeps ``max_concurrency`` requests in flight in all, on any executor, and each job's share
of ``requests_per_minute`` is its share of the concurrency.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from affalign.service.client import (
    RETRIES,
    RETRY_AFTER_CAP_S,
    TRANSIENT_STATUS,
    ServiceClient,
    ServiceUnavailable,
    retry_after_seconds,
)

# Environment variable names as shells write them; a value that is not one (an API key
# pasted in by mistake, say) is refused without being repeated.
VARIABLE_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
ENGINE = "OpenAI-compatible endpoint"
# What provenance keeps of the endpoint's /v1/models entry for the served model.
REPORTED_FIELDS = ("id", "owned_by", "root", "max_model_len")


class EndpointError(ServiceUnavailable):
    """An endpoint model cannot be used as configured (key, limits, budget, log-probabilities)."""


@dataclass(frozen=True)
class EndpointSpec:
    """One endpoint model: where it is, how to authenticate, and its limits.

    ``max_concurrency`` requests in flight and ``requests_per_minute`` hold across all of the
    endpoint's shard jobs together; ``shard_jobs`` of them run at once, each with
    ``max_concurrency // shard_jobs`` requests in flight.
    """

    model: str
    base_url: str
    served_model: str
    request_budget: int
    api_key_env: str | None = None
    max_concurrency: int = 8
    shard_jobs: int = 1
    requests_per_minute: float | None = None
    request_timeout_s: float = 600.0
    logprobs: str = "auto"
    top_logprobs: int | None = None

    @classmethod
    def from_config(cls, model: str, entry: Mapping[str, Any]) -> EndpointSpec:
        """From ``models.<model>`` (schema-validated, defaults filled in)."""
        endpoint = entry["endpoint"]
        return cls(
            model=model,
            base_url=str(endpoint["base_url"]).rstrip("/"),
            served_model=endpoint["model"],
            request_budget=int(endpoint["request_budget"]),
            api_key_env=endpoint.get("api_key_env"),
            max_concurrency=int(endpoint["max_concurrency"]),
            shard_jobs=int(endpoint["shard_jobs"]),
            requests_per_minute=endpoint.get("requests_per_minute"),
            request_timeout_s=float(endpoint["request_timeout_s"]),
            logprobs=endpoint["logprobs"],
            top_logprobs=endpoint.get("top_logprobs"),
        )

    @property
    def host(self) -> str:
        """Scheme and host of the endpoint (what provenance records), without credentials."""
        parts = urllib.parse.urlsplit(self.base_url)
        return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")

    @property
    def resource(self) -> str:
        """The Snakemake resource that bounds the endpoint's requests in flight across jobs."""
        return "endpoint_" + re.sub(r"[^A-Za-z0-9_]", "_", self.model)

    @property
    def job_concurrency(self) -> int:
        """Requests one shard job keeps in flight (its units of :attr:`resource`)."""
        return max(1, self.max_concurrency // self.shard_jobs)

    @property
    def job_requests_per_minute(self) -> float | None:
        """One job's share of ``requests_per_minute``: jobs at once times this is at most the
        limit, since they hold at most ``max_concurrency`` units together."""
        if not self.requests_per_minute:
            return None
        return self.requests_per_minute * self.job_concurrency / self.max_concurrency

    def identity(self) -> dict[str, str]:
        """What identifies the model's answers (part of every shard's parameters and cache
        key): the base URL and the served name; not the key's variable, not the limits."""
        return {"base_url": self.base_url, "model": self.served_model}

    def label(self) -> str:
        return f"{self.served_model} at {self.base_url}"

    def api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The API key from its environment variable (None for an endpoint without one)."""
        if not self.api_key_env:
            return None
        key = (os.environ if environ is None else environ).get(self.api_key_env)
        if not key:
            raise EndpointError(
                f"the environment variable {self.api_key_env} (models.{self.model}.endpoint.api_key_env) "
                "is not set: export it with the API key before running"
            )
        return key


def endpoint_config_problems(
    model: str, entry: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> list[str]:
    """What keeps an endpoint model entry from being run, before any job (empty if nothing).

    Never repeats a value that might be a key: neither ``api_key_env`` when it is not a
    variable name, nor a base URL that carries credentials.
    """
    environ = os.environ if environ is None else environ
    endpoint = entry["endpoint"]
    key = f"models.{model}.endpoint"
    problems = []
    parts = urllib.parse.urlsplit(str(endpoint["base_url"]))
    if parts.username or parts.password or parts.query or "key=" in parts.path.lower():
        problems.append(
            f"{key}.base_url carries credentials or a query (not shown): give the bare base URL "
            f"and the key's variable in {key}.api_key_env"
        )
    elif parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{key}.base_url {endpoint['base_url']!r} is not an http(s) URL")
    variable = endpoint.get("api_key_env")
    if variable is not None and not VARIABLE_NAME.match(variable):
        problems.append(
            f"{key}.api_key_env must be the NAME of an environment variable (upper-case letters, "
            "digits and _), never the key itself; the value given is not shown"
        )
    elif variable is not None and not environ.get(variable):
        problems.append(
            f"{key}.api_key_env: the environment variable {variable} is not set; export it with the "
            f"API key, or run the other models with --config only_models=[...]"
        )
    if endpoint["shard_jobs"] > endpoint["max_concurrency"]:
        problems.append(
            f"{key}.shard_jobs ({endpoint['shard_jobs']}) exceeds max_concurrency "
            f"({endpoint['max_concurrency']}): each shard job needs at least one request in flight"
        )
    return problems


def budget_problems(planned: Mapping[str, int], specs: Mapping[str, EndpointSpec]) -> list[str]:
    """Endpoints whose planned requests exceed their request budget, one line each."""
    return [
        f"models.{name}.endpoint: this run would send {planned[name]} requests to {specs[name].label()}, "
        f"more than its request_budget of {specs[name].request_budget}"
        for name in sorted(planned)
        if planned[name] > specs[name].request_budget
    ]


class RequestPacer:
    """Starts requests at least ``60 / per_minute`` seconds apart, the first one interval after
    the pacer is made: a job that follows another in the same share of the limit then keeps
    the spacing too, so no minute ever holds more than the job's share."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 60.0 / per_minute
        self.clock = clock
        self._next = clock() + self.interval

    def reserve(self) -> float:
        """Book the next start and return how long to wait for it (seconds)."""
        now = self.clock()
        start = max(now, self._next)
        self._next = start + self.interval
        return start - now

    async def wait(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


def _root(base_url: str) -> str:
    """The server's root: vLLM serves ``/tokenize`` beside ``/v1``."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


class EndpointClient(ServiceClient):
    """The service client for an endpoint model: a fixed base URL instead of a service file.

    ``wait()`` reads the key from its variable and asks ``/v1/models`` once (the model id the
    server reports goes to provenance; a wrong key fails here, before any generation). The
    key is sent as a bearer token and removed from every error text; 401 and 403 fail at
    once, naming the variable; 429 and 5xx are retried, honouring ``Retry-After``.
    """

    def __init__(self, spec: EndpointSpec, *, max_in_flight: int | None = None, watch_every_s: float = 2.0):
        super().__init__(
            None,
            f"the endpoint {spec.host}",
            max_in_flight=max_in_flight or spec.job_concurrency,
            request_timeout_s=spec.request_timeout_s,
            watch_every_s=watch_every_s,
        )
        self.spec = spec
        self._key: str | None = None
        rate = spec.job_requests_per_minute
        self._pacer = RequestPacer(rate) if rate else None
        self.fingerprints: set[str] = set()

    # The hooks of ServiceClient.
    def served_name(self, model: str) -> str:
        return self.spec.served_model

    def address(self, path: str) -> str:
        if path.startswith("/v1/"):
            return self.spec.base_url + path[len("/v1") :]
        return _root(self.spec.base_url) + path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    async def pace(self) -> None:
        if self._pacer is not None:
            await self._pacer.wait()

    def redact(self, text: str) -> str:
        return text.replace(self._key, "[API key]") if self._key else text

    def rejection(self, status: int, detail: str, what: str) -> str:
        if status in (401, 403):
            return self.refused(status, what)
        return f"{self.spec.host} rejected {what} for {self.spec.served_model!r} with HTTP {status}: {detail}"

    def refused(self, status: int, what: str) -> str:
        """401/403, without the server's text (some echo part of the key)."""
        if self.spec.api_key_env:
            cause = (
                f"the API key in the environment variable {self.spec.api_key_env} was refused"
                if status == 401
                else f"the API key in the environment variable {self.spec.api_key_env} may not use this model"
            )
        else:
            cause = f"it needs an API key: name its variable in models.{self.spec.model}.endpoint.api_key_env"
        return f"{self.spec.host} answered {what} with HTTP {status}: {cause}"

    def still_answers(self) -> bool:
        return True  # an endpoint has no /health of ours: the retry count bounds the attempts

    def where_to_look(self) -> str:
        return f"endpoint {self.spec.label()}"

    def observe(self, body: Mapping[str, Any]) -> None:
        fingerprint = body.get("system_fingerprint")
        if fingerprint:
            self.fingerprints.add(str(fingerprint))

    def problem(self) -> str | None:
        return None  # no service file to withdraw

    def wait_for_siblings(self, poll_s: float = 2.0) -> None:
        return None  # endpoint jobs run alone, not in a service group

    def wait(self, timeout_s: float = 0.0, poll_s: float = 1.0) -> dict[str, Any]:
        """Read the key and ask the endpoint which models it serves (once per job)."""
        self._key = self.spec.api_key()
        listed = self.get_json("/v1/models", "the model list")
        entries = listed.get("data") if isinstance(listed, Mapping) else None
        reported = None
        for entry in entries or []:
            if isinstance(entry, Mapping) and entry.get("id") == self.spec.served_model:
                reported = {key: entry[key] for key in REPORTED_FIELDS if key in entry}
        self.service = {
            "url": self.spec.base_url,
            "host": self.spec.host,
            "reported_model": reported,
            "models_listed": len(entries) if isinstance(entries, list) else None,
        }
        if reported is None and isinstance(entries, list):
            print(
                f"[affalign] warning: {self.spec.host}/v1/models does not list {self.spec.served_model!r}",
                flush=True,
            )
        return self.service

    def get_json(self, path: str, what: str) -> Any:
        """GET a small JSON document (synchronously, before the session opens), retried like
        :meth:`post`; a path the endpoint does not offer gives None."""
        request = urllib.request.Request(self.address(path), headers=self.headers())
        last_error = ""
        for attempt in range(RETRIES):
            asked_wait = None
            try:
                with urllib.request.urlopen(request, timeout=min(60.0, self.request_timeout_s)) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                if error.code in (401, 403):
                    raise EndpointError(self.refused(error.code, what)) from None
                if error.code not in TRANSIENT_STATUS:
                    return None
                last_error = f"HTTP {error.code}"
                asked_wait = retry_after_seconds(error.headers.get("Retry-After"))
            except (urllib.error.URLError, OSError, ValueError) as error:
                last_error = self.redact(f"{type(error).__name__}: {error}")
            if asked_wait is not None and asked_wait > RETRY_AFTER_CAP_S:
                break
            time.sleep(max(min(30.0, 0.5 * 2**attempt) * (1 + random.random()), asked_wait or 0.0))
        raise EndpointError(f"{what} of {self.spec.label()} could not be read ({last_error})")

    def provenance(self, model_info: Mapping[str, Any]) -> dict[str, Any]:
        """The endpoint's host (never the key), the served name, the model the endpoint
        reports and every ``system_fingerprint`` its answers carried."""
        reported = (self.service or {}).get("reported_model") or {}
        return {
            "model_source": f"endpoint {self.spec.host}",
            "revision": None,
            "engine": ENGINE,
            "device": None,
            "engine_options": None,
            "server_healthy_after_s": None,
            "endpoint": {
                "host": self.spec.host,
                "served_model": self.spec.served_model,
                "reported_model_id": reported.get("id"),
                "reported_model": reported or None,
                "system_fingerprints": sorted(self.fingerprints),
                "max_concurrency": self.spec.max_concurrency,
                "job_concurrency": self.max_in_flight,
                "requests_per_minute": self.spec.requests_per_minute,
            },
        }
