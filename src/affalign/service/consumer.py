"""What a consumer of a model's server does with its finished shard, and the options its
command line gives it (:func:`consumer_options`).

Both consumers (the generate and the opinion shard jobs) keep every finished shard in a
shard store, under the hash of what determines its content, before writing its output, and
take it back from there on a rerun. A shard whose output cannot be written (an unwritable
folder, a full disk) therefore keeps its rows, and it fails only once the other consumers
of its model's server have finished: Snakemake kills every job of a service group the
moment one of them fails, and their requests in flight would be lost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

import polars as pl

from affalign.io import place_file, write_table
from affalign.service.client import ServiceClient, ServiceUnavailable
from affalign.service.endpoint import EndpointClient, EndpointSpec


def consumer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of a shard writer (generation or opinions) given by the flags of
    :func:`affalign.io.add_consumer_flags`: where it reads and writes, how it runs, and
    ``client``, an endpoint model's client reached at its base URL (None for a model the
    workflow serves, reached through its service file)."""
    client = (
        EndpointClient(EndpointSpec.from_config(args.model, {"endpoint": json.loads(args.endpoint)}))
        if args.endpoint
        else None
    )
    return {
        "service_file": args.service_file,
        "server_log": args.server_log,
        "output": args.output,
        "store": args.store,
        "max_in_flight": args.max_in_flight,
        "server_start_timeout_s": args.server_start_timeout,
        "request_timeout_s": args.request_timeout,
        "client": client,
    }


def shard_timing(began: float, wall: float, requests: int) -> dict[str, Any]:
    """What a shard's provenance records of its requests for the job account
    (:mod:`affalign.service.account`): when they began and ended (Unix seconds) and how many."""
    return {
        "shard_wall_s": round(wall, 3),
        "began_at": round(began, 3),
        "ended_at": round(began + wall, 3),
        "requests": requests,
    }


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
