"""The one HTTP client of a model's service, used by every consumer (generation and
opinion shards).

A :class:`ServiceClient` holds what each request needs — the service file and the server
log it points users to, the server's URL once it is ready, the HTTP session, the limit on
requests in flight — and runs a consumer's work under a watchdog that ends it at once when
the server dies or its service is withdrawn. Requests are retried with back-off on
transient errors (timeouts, 408/429/5xx) while the server still answers ``/health``,
waiting at least as long as a ``Retry-After`` header asks.

How the client reaches its server is a handful of small hooks (:meth:`ServiceClient.address`,
``headers``, ``pace``, ``rejection``, ``still_answers``, ``observe``, ``provenance``), in the
manner of lm-evaluation-harness's ``TemplateAPI``: a served model's defaults here, an
OpenAI-compatible endpoint's in :class:`affalign.service.endpoint.EndpointClient`.

Consumers register in a folder beside the service file while they run (see
:meth:`ServiceClient.wait_for_siblings`): Snakemake kills every job of a service group as
soon as one fails, so a consumer that must fail waits for its siblings first.
"""

from __future__ import annotations

import asyncio
import atexit
import http.client
import json
import math
import os
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from affalign.io import pid_alive

if TYPE_CHECKING:
    import aiohttp

RETRIES = 5
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
Result = TypeVar("Result")
# A server that asks to wait longer than this (a quota that resets hourly or daily) fails
# the request at once instead of holding a job for hours.
RETRY_AFTER_CAP_S = 300.0


class ServiceUnavailable(RuntimeError):
    """The model's server never came up, rejected a request, or died while a shard was written."""


class RequestRejected(ServiceUnavailable):
    """The server answered a request with an error that retrying cannot fix (``status``)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for, in seconds (delta-seconds or an HTTP date);
    None when the header is absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


# What a failed plain GET raises: no answer, a timeout, an HTTP error status, a bad URL, a
# garbled or cut answer.
GET_ERRORS = (urllib.error.URLError, OSError, ValueError, http.client.HTTPException)


def get_text(url: str, timeout: float = 2.0) -> str:
    """The body of a plain GET of ``url`` (the server's own endpoints: ``/health``,
    ``/v1/models``, ``/metrics``); raises one of :data:`GET_ERRORS` unless it answers 2xx."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8", errors="replace")


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """Whether the server at ``url`` answers ``/health``."""
    try:
        get_text(f"{url}/health", timeout=timeout)
    except GET_ERRORS:
        return False
    return True


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot, from /proc): with the pid, it names
    one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def consumers_folder(service_file: str | Path) -> Path:
    """Where a service's running consumers register (the service job removes it when it ends)."""
    service_file = Path(service_file)
    return service_file.with_name(f"{service_file.stem}.consumers")


def _register_consumer(service_file: Path) -> None:
    folder = consumers_folder(service_file)
    folder.mkdir(parents=True, exist_ok=True)
    entry = folder / f"{socket.gethostname()}-{os.getpid()}"
    entry.write_text(json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid())}))
    atexit.register(lambda: entry.unlink(missing_ok=True))


def live_sibling_consumers(service_file: str | Path) -> list[int]:
    """Pids of the other registered consumers of this service that still run on this host."""
    folder = consumers_folder(service_file)
    prefix = f"{socket.gethostname()}-"
    siblings = []
    for entry in folder.glob(f"{prefix}*") if folder.is_dir() else []:
        record = _read_json(entry) or {}
        pid = record.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and _start_time(pid) == record.get("start"):
            siblings.append(pid)
    return sorted(siblings)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def served_model_provenance(service: Mapping[str, Any], model_info: Mapping[str, Any]) -> dict[str, Any]:
    """What a shard records of the server that answered it: model source and revision,
    engine, device, engine options and the server's start-up time (seconds)."""
    return {
        "model_source": service.get("model_source"),
        "revision": model_info.get("revision"),
        "engine": service.get("engine"),
        "device": service.get("device"),
        "engine_options": service.get("engine_options"),
        "server_healthy_after_s": service.get("healthy_after_s"),
        # Which server session answered (the job account pairs shards with sessions).
        "server_started_at": service.get("started_at"),
        "server_pid": service.get("pid"),
        "server_host": service.get("host"),
        # Accelerator, NVIDIA driver, CUDA, torch and vLLM as the server's interpreter saw them.
        "runtime": service.get("runtime"),
    }


# Requests in flight the consumers of one server may hold together: its batch
# (max_num_seqs) and a queue behind it deep enough that the engine never waits for a
# consumer to send the next request, whatever the machine. At least QUEUE_HEADROOM times the
# batch, and at least MIN_SERVER_BUDGET: on the CPU build the engine's polling holds most of
# two cores and the HTTP front end refills the queue slowly. Measured with make
# bench-generate's service path (6 consumers x 1,024 requests, max_num_seqs 64, idle 2-core
# machine): a budget of 80 requests took 276 s, 256 took 89 s, 512 took 55 s, 1,024 took
# 40 s (offline vLLM: 28 s). Waiting requests cost the server next to nothing.
QUEUE_HEADROOM = 1.25
MIN_SERVER_BUDGET = 1024


def in_flight_share(max_num_seqs: int | None, consumers: int, fixed: int) -> int:
    """Requests one of ``consumers`` running consumers of a server may keep in flight: an even
    share of the server's budget, ``max(QUEUE_HEADROOM × max_num_seqs, MIN_SERVER_BUDGET)``
    (at least one), so that the server stays full and, when most shards are done, the last
    ones use all of it; ``fixed`` where the server's ``max_num_seqs`` is unknown (vLLM's
    default, or an endpoint)."""
    if not max_num_seqs:
        return fixed
    budget = max(QUEUE_HEADROOM * max_num_seqs, MIN_SERVER_BUDGET)
    return max(1, math.ceil(budget / max(consumers, 1)))


class InFlightLimit:
    """At most ``limit`` requests at a time, where ``limit`` may change while requests wait
    (a semaphore whose size follows the number of consumers sharing the server)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.active < self.limit)
            self.active += 1

    async def __aexit__(self, *exc_info: object) -> None:
        async with self._changed:
            self.active -= 1
            self._changed.notify_all()

    async def resize(self, limit: int) -> None:
        async with self._changed:
            self.limit = limit
            self._changed.notify_all()


class ServiceClient:
    """One consumer's connection to a model's service.

    ``wait()`` blocks until the service is ready; ``run(work)`` opens the HTTP session and
    awaits ``work(client)`` under the watchdog; inside it, ``post()`` sends requests. The
    consumers of one server share its capacity: each keeps at most its share of the server's
    ``max_num_seqs`` in flight (:func:`in_flight_share`, recomputed as consumers start and
    end), or ``max_in_flight`` where that is unknown.
    """

    def __init__(
        self,
        service_file: str | Path | None,
        server_log: str | Path,
        *,
        max_in_flight: int,
        request_timeout_s: float,
        watch_every_s: float = 2.0,
    ) -> None:
        self.service_file = Path(service_file) if service_file is not None else None
        self.server_log = str(server_log)
        self.max_in_flight = max_in_flight
        self.request_timeout_s = request_timeout_s
        self.watch_every_s = watch_every_s
        self.service: dict[str, Any] = {}
        self._session: aiohttp.ClientSession | None = None
        self._limiter: InFlightLimit | None = None

    @property
    def url(self) -> str:
        return self.service["url"]

    def wait(self, timeout_s: float, poll_s: float = 1.0) -> dict[str, Any]:
        """Block until the service file says the server is ready and it answers ``/health``.

        Fails fast, pointing at the server log, when the service reports a failure or the
        server process is gone; fails after ``timeout_s`` seconds otherwise.
        """
        began = time.time()
        seen_pid: int | None = None
        _register_consumer(self.service_file)
        while True:
            if not self.service_file.exists():
                # Snakemake only starts a consumer once the service file exists; it is removed
                # when the service job fails or ends.
                raise ServiceUnavailable(
                    f"the service file {self.service_file} is gone: the model server stopped or failed; "
                    f"see its log {self.server_log}"
                )
            service = _read_json(self.service_file) or {}
            status = service.get("status")
            if status == "ready" and is_healthy(service["url"]):
                self.service = service
                return service
            if status == "failed":
                raise ServiceUnavailable(
                    f"the model server failed: {service.get('error', 'no reason recorded')}\n"
                    f"Server log: {self.server_log}"
                )
            seen_pid = service.get("pid", seen_pid)
            if isinstance(seen_pid, int) and not pid_alive(seen_pid):
                raise ServiceUnavailable(
                    f"the model server (pid {seen_pid}) is gone; see its log {self.server_log}"
                )
            if time.time() - began > timeout_s:
                raise ServiceUnavailable(
                    f"no healthy model server after {timeout_s:.0f} s (service file {self.service_file}, "
                    f"status {status!r}); see the server log {self.server_log}, or raise "
                    "generation.server_start_timeout_s"
                )
            time.sleep(poll_s)

    def wait_for_siblings(self, poll_s: float = 2.0) -> None:
        """Block while other consumers of this service still run (or until the service file is
        gone: then the group is being stopped anyway).

        For a consumer about to fail: Snakemake kills every job of the group the moment one
        fails, which would throw away its siblings' requests in flight. A consumer that fails
        before its siblings had time to register (they register when they start waiting for
        the service) should call :meth:`wait` first.
        """
        announced: list[int] = []
        while self.service_file.exists():
            siblings = live_sibling_consumers(self.service_file)
            if not siblings:
                return
            if siblings != announced:
                print(
                    f"[affalign] failing once the {len(siblings)} other consumers of this model's "
                    f"server have finished (pids {', '.join(map(str, siblings))})",
                    flush=True,
                )
                announced = siblings
            time.sleep(poll_s)

    def problem(self) -> str | None:
        """Why the service that was ready when the work started can no longer be used, if so."""
        current = _read_json(self.service_file)
        if current is None:
            return f"the service file {self.service_file} is gone (the model server job ended or failed)"
        if current.get("status") != "ready" or current.get("url") != self.url:
            status, error = current.get("status"), current.get("error", "")
            return f"the model server's status changed to {status!r}: {error}"
        pid = current.get("pid")
        if isinstance(pid, int) and not pid_alive(pid):
            return f"the model server (pid {pid}) is gone"
        return None

    def max_num_seqs(self) -> int | None:
        """The server's ``max_num_seqs`` as its service file records it (None: not set)."""
        return (self.service.get("engine_options") or {}).get("max_num_seqs")

    def in_flight_limit(self) -> int:
        """This consumer's share of the server now (it and its live siblings)."""
        if self.service_file is None:
            return self.max_in_flight
        consumers = 1 + len(live_sibling_consumers(self.service_file))
        return in_flight_share(self.max_num_seqs(), consumers, self.max_in_flight)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_every_s)
            problem = self.problem()
            if problem:
                raise ServiceUnavailable(f"{problem}; see the server log {self.server_log}")
            if self._limiter is not None:
                await self._limiter.resize(self.in_flight_limit())

    async def run(self, work: Callable[[ServiceClient], Awaitable[Result]]) -> Result:
        """Open the session and await ``work(self)`` while watching the service; a dead or
        withdrawn service ends it at once (a request in flight may otherwise wait on a
        server that is shutting down)."""
        if not self.service:
            raise RuntimeError("ServiceClient.run() before wait(): the service's address is unknown")
        self._limiter = InFlightLimit(self.in_flight_limit())
        # The connection pool holds whatever share this consumer may get (alone on the server).
        ceiling = in_flight_share(self.max_num_seqs(), 1, self.max_in_flight)
        # Imported here, not with the module: a consumer job parses its command line and
        # checks its modules (start_job's one line) before it needs the HTTP client.
        import aiohttp

        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.request_timeout_s),
            connector=aiohttp.TCPConnector(limit=ceiling),
        ) as session:
            self._session = session
            task = asyncio.ensure_future(work(self))
            watchdog = asyncio.ensure_future(self._watch())
            try:
                await asyncio.wait([task, watchdog], return_when=asyncio.FIRST_COMPLETED)
                if watchdog.done():
                    task.cancel()
                    watchdog.result()
                return task.result()
            finally:
                watchdog.cancel()
                task.cancel()
                self._session = None

    # --- How this client reaches its server: hooks an endpoint client overrides. -----------

    def served_name(self, model: str) -> str:
        """The model name requests carry: our servers serve each model under its slug."""
        return model

    def address(self, path: str) -> str:
        """The URL of a server path such as ``/v1/completions`` or ``/tokenize``."""
        return self.url + path

    def headers(self) -> dict[str, str]:
        """Headers every request carries (an endpoint's authorisation)."""
        return {}

    async def pace(self) -> None:
        """Wait, if need be, before a request starts (an endpoint's requests-per-minute limit)."""

    def redact(self, text: str) -> str:
        """``text`` (a server's error answer) as it may appear in an error message or a log."""
        return text

    def rejection(self, status: int, detail: str, what: str) -> str:
        """The error message for a request the server refused for good."""
        return f"server rejected {what} with HTTP {status}: {detail}"

    def still_answers(self) -> bool:
        """Whether the server is worth retrying after a transient failure."""
        return is_healthy(self.url)

    def where_to_look(self) -> str:
        return f"see the server log {self.server_log}"

    def observe(self, body: Mapping[str, Any]) -> None:
        """Take note of a successful answer (an endpoint records its system_fingerprint)."""

    def provenance(self, model_info: Mapping[str, Any]) -> dict[str, Any]:
        """What a shard records of the server that answered it."""
        return served_model_provenance(self.service, model_info)

    async def post(self, endpoint: str, payload: Mapping[str, Any], what: str) -> dict[str, Any]:
        """POST ``payload`` to the server and return its JSON answer, retrying transient errors
        with back-off (at least as long as a ``Retry-After`` header asks); ``what`` names the
        request in errors. A refusal that retrying cannot fix raises :class:`RequestRejected`."""
        if self._session is None or self._limiter is None:
            raise RuntimeError("ServiceClient.post() outside ServiceClient.run()")
        import aiohttp  # imported by run() already (see there)

        last_error = ""
        for attempt in range(RETRIES):
            asked_wait: float | None = None
            async with self._limiter:
                await self.pace()
                try:
                    async with self._session.post(
                        self.address(endpoint), json=payload, headers=self.headers()
                    ) as response:
                        if response.status == 200:
                            body = await response.json()
                            self.observe(body)
                            return body
                        detail = self.redact((await response.text())[:500])
                        if response.status not in TRANSIENT_STATUS:
                            message = self.rejection(response.status, detail, what)
                            raise RequestRejected(message, response.status)
                        last_error = f"HTTP {response.status}: {detail}"
                        asked_wait = retry_after_seconds(response.headers.get("Retry-After"))
                except (TimeoutError, aiohttp.ClientError) as error:
                    last_error = self.redact(f"{type(error).__name__}: {error}")
            if not self.still_answers():
                raise ServiceUnavailable(
                    f"the model server at {self.url} stopped answering ({last_error}); {self.where_to_look()}"
                )
            if asked_wait is not None and asked_wait > RETRY_AFTER_CAP_S:
                raise ServiceUnavailable(
                    f"{what}: the server asks to retry after {asked_wait:.0f} s (more than "
                    f"{RETRY_AFTER_CAP_S:.0f} s: a quota is exhausted?) ({last_error}); "
                    f"{self.where_to_look()}"
                )
            backoff = min(30.0, 0.5 * 2**attempt) * (1 + random.random())
            await asyncio.sleep(max(backoff, asked_wait or 0.0))
        raise ServiceUnavailable(f"{what} failed {RETRIES} times ({last_error}); {self.where_to_look()}")
