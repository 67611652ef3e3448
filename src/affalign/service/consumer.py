"""The one skeleton of a consumer of a model's server: its command line, and what it does
around each shard (:func:`run_shard`).

Every consumer (generation shards, opinion shards, an LLM classifier's affect files) does
the same around the part that differs: build its client, look up the shard store under the
hash of what determines the shard's content, wait for the server, time the requests, write
the shard to the store and then to its output. The consumers supply only that part, as two
hooks (:class:`ShardWork`): the requests, and the table and provenance made of the answers.

The store keeps every finished shard before its output is written, and a rerun takes it back
from there. A shard whose output cannot be written (an unwritable folder, a full disk)
therefore keeps its rows, and it fails only once the other consumers of its model's server
have finished: Snakemake kills every job of a service group the moment one of them fails,
and their requests in flight would be lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import polars as pl

from affalign.io import place_file, run_logged, start_job, write_table
from affalign.service.client import ServiceClient, ServiceUnavailable
from affalign.service.endpoint import EndpointClient, EndpointSpec

Answers = TypeVar("Answers")

# What a consumer needs beyond the package's own dependencies: the HTTP client of the
# service and of endpoints (imported only once a request is sent, so that a job without it
# gets start_job's one line).
CONSUMER_MODULES = ("aiohttp",)


# --- The command line ------------------------------------------------------------------------


def add_consumer_flags(
    parser: argparse.ArgumentParser, *, output: bool = True, endpoint: bool = True
) -> None:
    """The flags of a job that talks to a model, read by :meth:`ConsumerOptions.from_args`:
    where it reads and writes (service file, server log, store, output, log), then how it runs
    (requests in flight, timeouts, an endpoint's settings): flags the workflow keeps out of its
    rerun decision, never what a shard contains.

    ``output``: one ``--output`` (a job with several outputs names them itself);
    ``endpoint``: an endpoint model may stand in for the service (``--endpoint``), so the
    service file is optional.
    """
    parser.add_argument(
        "--service-file",
        required=not endpoint,
        default=None,
        help="the model's service file" + (" (none for an endpoint)" if endpoint else ""),
    )
    parser.add_argument("--server-log", default="", help="the model server's log, quoted when it fails")
    parser.add_argument("--store", default=None, help="the model's shard store folder")
    if output:
        parser.add_argument("--output", required=True)
    parser.add_argument("--log", required=True, help="the rule's log file")
    parser.add_argument("--max-in-flight", type=int, required=True, help="requests in flight at once")
    parser.add_argument(
        "--server-start-timeout", type=float, required=True, help="seconds to wait for the service"
    )
    parser.add_argument("--request-timeout", type=float, required=True, help="seconds per request")
    if endpoint:
        parser.add_argument(
            "--endpoint", default=None, help="an endpoint model's models.<m>.endpoint entry as JSON"
        )


def consumer_parser(description: str, **flags: bool) -> argparse.ArgumentParser:
    """A consumer job's parser: ``--settings`` (what determines its shards, the rule's
    params as JSON) and :func:`add_consumer_flags` (``flags``); the job adds its coordinates."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--settings", required=True, help="what determines the shard (the rule's params) as JSON"
    )
    add_consumer_flags(parser, **flags)
    return parser


def run_consumer_job(
    args: argparse.Namespace, needed_for: str, write: Callable[[ConsumerOptions], object]
) -> int:
    """A consumer job's ``main`` after parsing: begin its log (:func:`~affalign.io.start_job`:
    the interpreter, and one line if it lacks :data:`CONSUMER_MODULES`), then ``write`` its
    shards under :func:`~affalign.io.run_logged`. The exit status."""
    if not start_job(args.log, CONSUMER_MODULES, needed_for):
        return 1
    run_logged(args.log, lambda: write(ConsumerOptions.from_args(args)))
    return 0


@dataclass(frozen=True, kw_only=True)
class ConsumerOptions:
    """How a consumer reaches its model and where it keeps its shards (the flags of
    :func:`add_consumer_flags`), never what a shard contains.

    ``endpoint``: an endpoint model, reached at its base URL with its own limits; None for a
    model the workflow serves, reached through its ``service_file``.
    """

    service_file: str | Path | None = None
    server_log: str | Path = ""
    store: str | Path | None = None
    max_in_flight: int
    server_start_timeout_s: float
    request_timeout_s: float
    endpoint: EndpointSpec | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ConsumerOptions:
        entry = getattr(args, "endpoint", None)
        return cls(
            service_file=args.service_file,
            server_log=args.server_log,
            store=args.store,
            max_in_flight=args.max_in_flight,
            server_start_timeout_s=args.server_start_timeout,
            request_timeout_s=args.request_timeout,
            endpoint=EndpointSpec.from_config(args.model, {"endpoint": json.loads(entry)}) if entry else None,
        )

    def client(self) -> ServiceClient:
        """A new client of the model: its endpoint's, or its service's."""
        if self.endpoint is not None:
            return EndpointClient(self.endpoint)
        return ServiceClient(
            self.service_file,
            self.server_log,
            max_in_flight=self.max_in_flight,
            request_timeout_s=self.request_timeout_s,
        )

    def kept(self, key: str) -> Path | None:
        """Where the store keeps the shard whose content hashes to ``key`` (None: no store)."""
        return Path(self.store) / f"{key}.parquet" if self.store else None


# --- One shard -------------------------------------------------------------------------------


def shard_timing(began: float, wall: float, requests: int) -> dict[str, Any]:
    """What a shard's provenance records of its requests for the job account
    (:mod:`affalign.service.account`): when they began and ended (Unix seconds) and how many."""
    return {
        "shard_wall_s": round(wall, 3),
        "began_at": round(began, 3),
        "ended_at": round(began + wall, 3),
        "requests": requests,
    }


@dataclass(frozen=True)
class Timing:
    """When a shard's requests began (Unix seconds) and how long they took."""

    began: float
    wall: float

    def provenance(self, requests: int) -> dict[str, Any]:
        return shard_timing(self.began, self.wall, requests)


@dataclass(frozen=True)
class FinishedShard:
    """A shard made of its answers: its rows, their provenance, and the line its log ends with."""

    frame: pl.DataFrame
    provenance: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class ShardWork(Generic[Answers]):
    """What one consumer's shard differs in: the hooks :func:`run_shard` calls.

    ``ask(client)``: the shard's requests, awaited under the client's watchdog and timed;
    ``finish(answers, client, timing)``: the shard made of their answers.
    """

    ask: Callable[[ServiceClient], Awaitable[Answers]]
    finish: Callable[[Answers, ServiceClient, Timing], FinishedShard]


def run_shard(
    options: ConsumerOptions,
    key: str,
    work: ShardWork[Any],
    output: str | Path,
    client: ServiceClient | None = None,
) -> pl.DataFrame:
    """Make one shard at ``output`` and return its rows: taken back from the store when it
    holds the shard whose content hashes to ``key``, else asked of the model (``work``) once
    its server is ready, kept in the store and written (:func:`publish_shard`).

    ``client``: one the consumer already holds for several shards (else a new one).
    """
    client = client or options.client()
    kept = options.kept(key)
    if restore_shard(kept, output, client, options.server_start_timeout_s):
        return pl.read_parquet(output)
    client.wait(options.server_start_timeout_s)
    began = time.time()
    answers = asyncio.run(client.run(work.ask))
    finished = work.finish(answers, client, Timing(began, time.time() - began))
    publish_shard(
        finished.frame,
        finished.provenance,
        output,
        kept=kept,
        client=client,
        start_timeout_s=options.server_start_timeout_s,
    )
    print(f"[affalign] {finished.summary}", flush=True)
    return finished.frame


class ShardWriteError(RuntimeError):
    """A shard's output could not be written (its rows may be kept in the shard store)."""


def restore_shard(
    kept: Path | None, output: str | Path, client: ServiceClient, start_timeout_s: float
) -> bool:
    """Place the shard kept in the store at ``output``; False when the store has none."""
    if kept is None or not kept.is_file():
        return False
    try:
        place_file(kept, output)
    except OSError as error:
        raise write_failure(client, output, error, kept, start_timeout_s) from error
    print(f"[affalign] {output}: finished earlier, taken from {kept}", flush=True)
    return True


def publish_shard(
    frame: pl.DataFrame,
    provenance: dict[str, Any],
    output: str | Path,
    *,
    kept: Path | None,
    client: ServiceClient,
    start_timeout_s: float,
) -> None:
    """Write a finished shard to the store (at ``kept``, unless None) and then to ``output``.

    The store first, so that the rows survive an output that cannot be written; a store
    that cannot be written only costs the copy (a warning). Raises :class:`ShardWriteError`
    after :func:`write_failure`'s wait when the output cannot be written.
    """
    if kept is not None:
        try:
            write_table(frame, kept, provenance)
        except OSError as error:
            print(
                f"[affalign] warning: cannot keep the shard in the store ({error}); writing only {output}",
                flush=True,
            )
            kept = None
    try:
        if kept is not None:
            place_file(kept, output)
        else:
            write_table(frame, output, provenance)
    except OSError as error:
        raise write_failure(client, output, error, kept, start_timeout_s) from error


def write_failure(
    client: ServiceClient, output: str | Path, error: OSError, kept: Path | None, start_timeout_s: float
) -> ShardWriteError:
    """The error for a shard whose output cannot be written, returned once the other
    consumers of the model's server have finished (see the module's docstring)."""
    reason = f"cannot write {output}: {error.strerror or error} ({error.filename or output})"
    if kept is not None:
        reason += f"; its rows are kept in {kept} and a rerun takes them from there"
    else:
        reason += "; its rows are lost (no shard store could keep them)"
    print(f"[affalign] {reason}", flush=True)
    with contextlib.suppress(ServiceUnavailable):
        # Siblings register when they start waiting for the server: once it is ready, every
        # consumer that started with this one has.
        client.wait(start_timeout_s)
    client.wait_for_siblings()
    return ShardWriteError(reason)
