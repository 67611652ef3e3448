"""What each model's server job spent its allocation on: the job account.

A served model's job (rule ``serve_model`` and its consumers, one SLURM allocation on a
cluster) loads the model, answers the consumers' requests and, once the last consumer is
done, is stopped. The server appends one record per session to its sessions file when it
stops (:func:`append_session`); every shard records when it was generated, by which server
session (``server_started_at``) and how many requests and output tokens it took. From these
:func:`job_account` derives one row per model and server session:

* ``load_s`` — from the server's start to its first healthy answer (weights, compilation,
  warm-up);
* ``generation_s`` — the length of the union of the shards' request intervals (shards run
  concurrently, so their walls are not summed); ``tokens_per_s`` is output tokens over it,
  the aggregate throughput that ``affalign plan``'s throughput table estimates;
* ``idle_tail_s`` — from the last shard's end to the server's stop (Snakemake noticing
  that the consumers are done, and the engine shutting down);
* ``allocation_s`` — from the SLURM job's start when the job ran under SLURM (else the
  server's start) to the server's stop; ``generating_share`` = generation_s / allocation_s;
* ``occupancy`` — how full the server was while generating: the mean of vLLM's running
  requests over ``max_num_seqs``, from its ``/metrics`` sampled every few seconds
  (:mod:`affalign.service.metrics`); ``low_occupancy_s``, the generating seconds below half
  of it (a tail where a few shards keep the job alive); ``mean_waiting``, the queue;
  ``server_tokens_per_s``, vLLM's own count of generated tokens over the generating
  seconds (opinion shards' one-token answers included), the figure for
  ``plan.throughput_tokens_per_s``; ``metrics_samples`` and ``metrics_missing`` say what
  they rest on (a failing ``/metrics`` leaves samples missing, not the session failed).

Shards taken from the shard store keep the provenance of the session that generated them,
so they are accounted to that session, not to the one that restored them. An endpoint
model has no server: its rows carry the generation columns only. A session with no stop
record (killed with SIGKILL, or records removed with ``logs/``) has nulls where the stop is
needed. Shards written before sessions were recorded (older results, or shards restored
from an older store) form one row per model with an empty session. The account covers the
sessions that produced the current results: a session whose shards were all replaced
since, or that served none (a server that failed to start), is in the sessions file and
the server log, not in the account.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from affalign.io import pid_alive, read_provenance, write_csv, write_table
from affalign.service.metrics import INTERVAL_S as METRICS_INTERVAL_S
from affalign.service.metrics import occupancy_figures, read_samples

ACCOUNT_SCHEMA = {
    "model": pl.String,
    "session": pl.Int64,
    "server_started_at": pl.String,
    "host": pl.String,
    "slurm_job_id": pl.String,
    "gpus": pl.String,
    "load_s": pl.Float64,
    "shards": pl.Int64,
    "requests": pl.Int64,
    "output_tokens": pl.Int64,
    "generation_s": pl.Float64,
    "tokens_per_s": pl.Float64,
    "idle_tail_s": pl.Float64,
    "allocation_s": pl.Float64,
    "generating_share": pl.Float64,
    "max_num_seqs": pl.Int64,
    "occupancy": pl.Float64,
    "low_occupancy_s": pl.Float64,
    "mean_waiting": pl.Float64,
    "server_tokens_per_s": pl.Float64,
    "metrics_samples": pl.Int64,
    "metrics_missing": pl.Int64,
}
# What the sampled /metrics give (see affalign.service.metrics.occupancy_figures).
OCCUPANCY_COLUMNS = (
    "occupancy",
    "low_occupancy_s",
    "mean_waiting",
    "server_tokens_per_s",
    "metrics_samples",
    "metrics_missing",
)


def session_record(
    *,
    model: str,
    started_at: float,
    healthy_after_s: float | None,
    stopped_at: float,
    pid: int | None,
    status: str,
    environ: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One server session as the sessions file records it (times are Unix seconds);
    ``extra``: the engine's ``max_num_seqs`` and what was sampled of its metrics."""
    environ = os.environ if environ is None else environ
    job_start = environ.get("SLURM_JOB_START_TIME")
    return {
        "model": model,
        "started_at": started_at,
        "healthy_after_s": healthy_after_s,
        "stopped_at": stopped_at,
        "pid": pid,
        "status": status,
        "host": socket.gethostname(),
        "slurm_job_id": environ.get("SLURM_JOB_ID"),
        "slurm_job_start": float(job_start) if job_start and job_start.isdigit() else None,
        "gpus": environ.get("CUDA_VISIBLE_DEVICES") or None,
        **(extra or {}),
    }


def append_session(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line. One short ``write`` in append mode, so records
    of sessions stopping at the same time are not interleaved; a reader skips a torn last
    line (a server killed mid-write)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(json.dumps(dict(record), sort_keys=True) + "\n")


def read_sessions(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every complete record of the sessions files that exist."""
    records = []
    for path in paths:
        if not Path(path).is_file():
            continue
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _session_key(model: str, started: Any, pid: Any) -> tuple[str, float | None, Any]:
    return model, None if started is None else round(float(started), 3), pid


def await_sessions(
    shards: Sequence[Mapping[str, Any]],
    sessions_files: Sequence[str | Path],
    timeout_s: float = 300.0,
    poll_s: float = 0.5,
) -> list[dict[str, Any]]:
    """The session records, once every server of this host that answered ``shards`` and
    has no record yet has stopped (at most ``timeout_s``).

    Outside SLURM the account job can start while Snakemake is still stopping the servers
    whose shards it reads; a server appends its record as soon as its processes are gone.
    On a cluster the servers ran in jobs that have ended, on other hosts: nothing to wait for.
    """
    host = socket.gethostname()
    deadline = time.monotonic() + timeout_s
    waited = False
    while True:
        sessions = read_sessions(sessions_files)
        recorded = {_session_key(s["model"], s.get("started_at"), s.get("pid")) for s in sessions}
        running = [
            shard
            for shard in shards
            if shard.get("server_host") == host
            and _session_key(shard["model"], shard.get("server_started_at"), shard.get("server_pid"))
            not in recorded
            and pid_alive(shard.get("server_pid"))
        ]
        if not running or time.monotonic() > deadline:
            break
        waited = True
        time.sleep(poll_s)
    if waited:
        # The record follows the last process within moments.
        time.sleep(1.0)
        sessions = read_sessions(sessions_files)
    return sessions


def merged_intervals(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """``intervals`` (start, end) as disjoint intervals covering the same time, in order."""
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def union_length(intervals: Sequence[tuple[float, float]]) -> float:
    """Total length covered by ``intervals`` (start, end); overlaps count once."""
    return sum(end - start for start, end in merged_intervals(intervals))


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_account(
    shards: Sequence[Mapping[str, Any]],
    sessions: Sequence[Mapping[str, Any]],
    samples: Sequence[Mapping[str, Any]] = (),
) -> pl.DataFrame:
    """One row per model and server session (see the module docstring for the columns).

    ``shards``: the provenance of each shard (``model``, ``began_at``, ``ended_at``,
    ``requests``, ``output_tokens``, ``server_started_at``, ``server_pid``, ``server_healthy_after_s``);
    shards written before these were recorded count in ``shards`` only. ``sessions``:
    records from :func:`read_sessions`, matched to shards by model, start time and pid.
    ``samples``: the sessions' ``/metrics`` samples (:func:`affalign.service.metrics.read_samples`),
    matched the same way.
    Sessions are numbered from 1 per model in order of start; an endpoint model's single
    row has session null.
    """
    stops = {_session_key(s["model"], s["started_at"], s.get("pid")): s for s in sessions}
    sampled: dict[tuple[str, float | None, Any], list[Mapping[str, Any]]] = {}
    for sample in samples:
        if sample.get("model") is not None and sample.get("started_at") is not None:
            key = _session_key(sample["model"], sample["started_at"], sample.get("pid"))
            sampled.setdefault(key, []).append(sample)
    groups: dict[tuple[str, float | None, Any], list[Mapping[str, Any]]] = {}
    for shard in shards:
        key = _session_key(shard["model"], shard.get("server_started_at"), shard.get("server_pid"))
        groups.setdefault(key, []).append(shard)
    rows = []
    numbering: dict[str, int] = {}
    for model, started, pid in sorted(groups, key=lambda k: (k[0], k[1] is not None, k[1] or 0.0)):
        members = groups[(model, started, pid)]
        stop = stops.get((model, started, pid))
        timed = [s for s in members if s.get("began_at") is not None and s.get("ended_at") is not None]
        generating = merged_intervals([(float(s["began_at"]), float(s["ended_at"])) for s in timed])
        generation_s = union_length(generating) if timed else None
        tokens = sum(int(s.get("output_tokens") or 0) for s in members)
        load_s = (stop or {}).get("healthy_after_s")
        if load_s is None:
            load_s = next(
                (s.get("server_healthy_after_s") for s in members if s.get("server_healthy_after_s")), None
            )
        idle_tail_s = allocation_s = share = None
        if stop is not None and stop.get("stopped_at") is not None:
            stopped = float(stop["stopped_at"])
            if timed:
                idle_tail_s = max(0.0, stopped - max(float(s["ended_at"]) for s in timed))
            allocation_start = stop.get("slurm_job_start") or started
            allocation_s = stopped - float(allocation_start)
            if generation_s is not None and allocation_s > 0:
                share = generation_s / allocation_s
        max_num_seqs = (stop or {}).get("max_num_seqs")
        occupancy = dict.fromkeys(OCCUPANCY_COLUMNS)
        if (model, started, pid) in sampled:
            occupancy = occupancy_figures(
                sampled[(model, started, pid)],
                generating,
                max_num_seqs,
                (stop or {}).get("metrics_interval_s") or METRICS_INTERVAL_S,
            )
        elif stop is not None and "metrics_missing" in stop:  # sampled, but no samples file
            occupancy.update(metrics_samples=0, metrics_missing=stop["metrics_missing"])
        session = None
        if started is not None:
            numbering[model] = numbering.get(model, 0) + 1
            session = numbering[model]
        rows.append(
            {
                "model": model,
                "session": session,
                "server_started_at": _iso(started),
                "host": (stop or {}).get("host"),
                "slurm_job_id": (stop or {}).get("slurm_job_id"),
                "gpus": (stop or {}).get("gpus"),
                "load_s": None if load_s is None else float(load_s),
                "shards": len(members),
                "requests": sum(int(s.get("requests") or 0) for s in members),
                "output_tokens": tokens,
                "generation_s": generation_s,
                # Opinion shards ask for one token per question and record none.
                "tokens_per_s": tokens / generation_s if generation_s and tokens else None,
                "idle_tail_s": idle_tail_s,
                "allocation_s": allocation_s,
                "generating_share": share,
                "max_num_seqs": max_num_seqs,
                **occupancy,
            }
        )
    seconds = [
        "load_s", "generation_s", "tokens_per_s", "idle_tail_s", "allocation_s", "low_occupancy_s",
        "mean_waiting", "server_tokens_per_s",
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=ACCOUNT_SCHEMA).with_columns(
        pl.col(seconds).round(3), pl.col("generating_share", "occupancy").round(6)
    )


def samples_files(sessions: Sequence[Mapping[str, Any]], sessions_files: Sequence[str | Path]) -> list[Path]:
    """The samples files the session records name; one not found where it was written (a
    relative path, the working folder moved) is looked for beside the sessions files."""
    folders = [Path(path).parent for path in sessions_files]
    found = []
    for record in sessions:
        named = record.get("metrics_file")
        if not named:
            continue
        candidates = [Path(named), *(folder / Path(named).name for folder in folders)]
        found.append(next((path for path in candidates if path.is_file()), Path(named)))
    return list(dict.fromkeys(found))


def write_job_account(
    shard_files: Iterable[str | Path],
    sessions_files: Iterable[str | Path],
    output: str | Path,
    csv: str | Path,
) -> pl.DataFrame:
    """Read every shard's provenance and the sessions files; write the account (parquet and CSV)."""
    shard_files = list(shard_files)
    shards = [read_provenance(path) for path in shard_files]
    sessions_files = list(sessions_files)
    sessions = await_sessions(shards, sessions_files)
    account = job_account(shards, sessions, read_samples(samples_files(sessions, sessions_files)))
    provenance = {
        "stage": "job_account",
        "shards": len(shard_files),
        "definitions": {
            "load_s": "server start to first healthy answer",
            "generation_s": "length of the union of the shards' request intervals",
            "tokens_per_s": "output_tokens / generation_s",
            "idle_tail_s": "last shard's end to the server's stop",
            "allocation_s": "SLURM job start (else server start) to the server's stop",
            "generating_share": "generation_s / allocation_s",
            "max_num_seqs": "the server's max_num_seqs (null: vLLM's default, not configured)",
            "occupancy": "mean of vLLM's running requests / max_num_seqs over the generating time",
            "low_occupancy_s": "generating seconds with running requests below half of max_num_seqs",
            "mean_waiting": "mean of vLLM's waiting requests over the generating time",
            "server_tokens_per_s": "vLLM's generation-token counter over the generating seconds sampled",
            "metrics_samples": "samples of the server's /metrics (every metrics_interval_s seconds)",
            "metrics_missing": "samples /metrics did not give (the figures above cover the rest)",
        },
    }
    write_table(account, output, provenance)
    write_csv(account, csv)
    for row in account.iter_rows(named=True):
        print(
            f"[affalign] {row['model']} session {row['session']}: {row['shards']} shards, "
            f"{row['output_tokens']} tokens, load {_seconds(row['load_s'])}, "
            f"generating {_seconds(row['generation_s'])}, idle tail {_seconds(row['idle_tail_s'])}, "
            f"share generating {_share(row['generating_share'])}, occupancy {_share(row['occupancy'])} "
            f"({_seconds(row['low_occupancy_s'])} below half), "
            f"{_rate(row['server_tokens_per_s'])} counted by the server",
            flush=True,
        )
        if row["metrics_missing"]:
            print(
                f"[affalign] {row['model']} session {row['session']}: {row['metrics_missing']} samples of "
                "/metrics missing (see the samples file beside the server log)",
                flush=True,
            )
    return account


def _seconds(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} s"


def _share(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0%}"


def _rate(value: float | None) -> str:
    return "unknown tokens/s" if value is None else f"{value:.0f} tokens/s"
