"""Small HTTP servers for the endpoint tests, run from a thread of the test process.

* :class:`StubEndpoint` answers as a test scripts it: for the failures a real vLLM server
  cannot be made to produce (403, 429 with ``Retry-After``, an endpoint without
  log-probabilities). Each request is recorded with its arrival time.
* :class:`RecordingProxy` forwards every request to a real server and records, on the
  server's side of the connection, how many generation requests were in flight at once.
  It can hold the first generation requests back until a number of them are in flight, so
  that whether parallel jobs overlap does not depend on how fast each one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from affalign.service import ConsumerOptions
from affalign.service.server import free_port

GENERATION_PATHS = ("/v1/completions", "/v1/chat/completions")


@dataclass
class Seen:
    method: str
    path: str
    at: float
    authorization: str | None
    body: dict | None = field(default=None)


class ThreadedServer:
    """An aiohttp application on 127.0.0.1, served from its own thread and event loop."""

    def __init__(self, app: web.Application) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = free_port()
        self.runner = web.AppRunner(app)
        self.call(self._start())

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def call(self, coroutine: Awaitable):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


Handler = Callable[[web.Request, list[Seen]], Awaitable[web.StreamResponse]]


class StubEndpoint(ThreadedServer):
    """Answers every request with ``handler(request, seen)``; ``seen`` lists the requests so
    far (this one last)."""

    def __init__(self, handler: Handler) -> None:
        self.seen: list[Seen] = []

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.json() if request.can_read_body else None
            self.seen.append(
                Seen(
                    request.method, request.path, time.monotonic(), request.headers.get("Authorization"), body
                )
            )
            return await handler(request, self.seen)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        super().__init__(app)


class RecordingProxy(ThreadedServer):
    """Forwards requests to ``target`` unchanged (headers included) and records each one and
    the peak number of generation requests in flight at once.

    With ``hold_until_in_flight=k``, generation requests wait before being forwarded until
    ``k`` of them are in flight at once, or ``hold_timeout_s`` has passed since the first one;
    after that the proxy forwards without waiting. Jobs whose start-up takes longer than their
    requests (a loaded two-core machine) would otherwise overlap by chance only: held, they
    overlap whenever the client lets them, and a client that does not shows up as a peak
    below ``k`` after one timeout."""

    def __init__(
        self, target: str, hold_until_in_flight: int | None = None, hold_timeout_s: float = 60.0
    ) -> None:
        self.target = target
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.peak = 0
        self._session: ClientSession | None = None
        self._hold_until = hold_until_in_flight
        self._hold_timeout_s = hold_timeout_s
        self._released: asyncio.Event | None = None
        self._first_held_at: float | None = None

        async def hold() -> None:
            if self._hold_until is None:
                return
            if self._released is None:  # made on the server's loop
                self._released = asyncio.Event()
                self._first_held_at = time.monotonic()
            if self.in_flight >= self._hold_until:
                self._released.set()
            remaining = self._hold_timeout_s - (time.monotonic() - self._first_held_at)
            if not self._released.is_set() and remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._released.wait(), timeout=remaining)
            self._released.set()

        async def handle(request: web.Request) -> web.StreamResponse:
            data = await request.read()
            self.seen.append(
                Seen(request.method, request.path, time.monotonic(), request.headers.get("Authorization"))
            )
            counted = request.method == "POST" and request.path in GENERATION_PATHS
            if counted:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            try:
                if counted:
                    await hold()
                if self._session is None:  # made on the server's loop, unbounded
                    self._session = ClientSession(
                        connector=TCPConnector(limit=0), timeout=ClientTimeout(total=600)
                    )
                headers = {
                    k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
                }
                async with self._session.request(
                    request.method, self.target + request.path_qs, data=data, headers=headers
                ) as answer:
                    body = await answer.read()
                    return web.Response(status=answer.status, body=body, content_type=answer.content_type)
            finally:
                if counted:
                    self.in_flight -= 1

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        super().__init__(app)

    def generation_requests(self) -> int:
        return sum(1 for seen in self.seen if seen.method == "POST" and seen.path in GENERATION_PATHS)

    def close(self) -> None:
        if self._session is not None:
            self.call(self._session.close())
        super().close()


def stub_service_options(stub: StubEndpoint, folder, max_in_flight: int, store=None) -> ConsumerOptions:
    """A consumer's options for ``stub`` as if it were a model's ready service: the service
    file written under ``folder``, the shard store ``store`` (default ``folder/store``)."""
    service = folder / "service.json"
    service.write_text(json.dumps({"status": "ready", "url": stub.url, "pid": os.getpid()}))
    return ConsumerOptions(
        service_file=service,
        server_log="server.log",
        store=store if store is not None else folder / "store",
        max_in_flight=max_in_flight,
        server_start_timeout_s=10,
        request_timeout_s=10,
    )
