"""How full a model's server was: vLLM's own metrics, sampled during a session.

The server wrapper (:mod:`affalign.service.server`) reads vLLM's Prometheus endpoint
(``/metrics``) every :data:`INTERVAL_S` seconds while its server is ready, and appends one
JSON line per sample to a table beside the server log (:func:`samples_file`): the time, the
requests running and waiting, and the server's generation-token counter. A sample the
endpoint did not give (an error, a timeout, a metric missing) is a line with ``error``
instead: the session goes on, and the job account counts the samples missing. Sampling is
done by the wrapper's own waiting loop, between its checks on the server: no thread or
process of its own, so it ends with the session.

From a session's samples and the times its shards were generating, :func:`occupancy_figures`
derives the job account's columns (:mod:`affalign.service.account`): the mean share of
``max_num_seqs`` running, the seconds below :data:`LOW_OCCUPANCY` of it, the mean queue and
the tokens per second the server counted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from affalign.service.client import get_text

# Seconds between samples (the wrapper's --metrics-interval; 0 turns sampling off).
INTERVAL_S = 2.0
# A sample's request gives up after this long: the session never waits on its metrics.
TIMEOUT_S = 5.0
# Below this share of max_num_seqs a second of generation counts towards the tail.
LOW_OCCUPANCY = 0.5
# vLLM's names (v1 engine; the counter gets Prometheus' ``_total``), summed over label sets
# (one per engine and served name).
METRICS = {
    "running": "vllm:num_requests_running",
    "waiting": "vllm:num_requests_waiting",
    "generation_tokens": "vllm:generation_tokens_total",
}


def samples_file(server_log: str | Path) -> Path:
    """Where the samples of a server's sessions go: beside its log (``x.server.log`` ->
    ``x.server.metrics.jsonl``)."""
    server_log = Path(server_log)
    return server_log.with_name(f"{server_log.name.removesuffix('.log')}.metrics.jsonl")


def parse_metrics(text: str) -> dict[str, float]:
    """The :data:`METRICS` in Prometheus' text format, each summed over its label sets;
    ValueError when one is absent."""
    wanted = {name: key for key, name in METRICS.items()}
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in wanted:
            continue
        try:
            value = float(line.rsplit("}", 1)[-1].split()[0])
        except (IndexError, ValueError):
            continue
        found[wanted[name]] = found.get(wanted[name], 0.0) + value
    missing = [METRICS[key] for key in METRICS if key not in found]
    if missing:
        raise ValueError(f"/metrics has no {', '.join(missing)}")
    return found


class MetricsSampler:
    """Samples one server session's ``/metrics`` when :meth:`poll` finds a sample due.

    ``session`` (model, started_at, pid) goes into every line, so that the job account can
    tell sessions apart in one file. Never raises: what goes wrong is a line with ``error``
    (or, if the file cannot be written, only counted in :meth:`summary`).
    """

    def __init__(
        self,
        url: str,
        path: str | Path,
        session: Mapping[str, Any],
        interval_s: float = INTERVAL_S,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.url, self.path, self.session = url, Path(path), dict(session)
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self.samples = self.missing = 0
        self.first_error: str | None = None
        self._next = 0.0

    def poll(self) -> None:
        """Take a sample if one is due."""
        if time.monotonic() >= self._next:
            self.sample()

    def sample(self) -> None:
        self._next = time.monotonic() + self.interval_s
        line: dict[str, Any] = {**self.session, "t": None}
        try:
            figures = parse_metrics(get_text(f"{self.url}/metrics", timeout=self.timeout_s))
            line.update(figures)
        except Exception as error:  # whatever it is, the session goes on without this sample
            line["error"] = f"{type(error).__name__}: {error}"[:300]
        line["t"] = round(time.time(), 3)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(line, sort_keys=True) + "\n")
        except OSError as error:
            line.setdefault("error", f"{self.path}: {error}")
        if "error" in line:
            self.missing += 1
            self.first_error = self.first_error or line["error"]
        else:
            self.samples += 1

    def summary(self) -> dict[str, Any]:
        """What the session record carries of the sampling."""
        return {
            "metrics_file": str(self.path),
            "metrics_interval_s": self.interval_s,
            "metrics_samples": self.samples,
            "metrics_missing": self.missing,
            "metrics_error": self.first_error,
        }


def read_samples(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every complete line of the samples files that exist (a torn last line is skipped)."""
    samples = []
    for path in dict.fromkeys(str(p) for p in paths):
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("t") is not None:
                samples.append(record)
    return samples


def _is_good(sample: Mapping[str, Any]) -> bool:
    return "error" not in sample and all(sample.get(key) is not None for key in METRICS)


def _overlap(start: float, end: float, intervals: Sequence[tuple[float, float]]) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in intervals)


def occupancy_figures(
    samples: Sequence[Mapping[str, Any]],
    generating: Sequence[tuple[float, float]],
    max_num_seqs: int | None,
    interval_s: float | None,
) -> dict[str, Any]:
    """One session's figures from its samples and its generating time.

    ``generating``: the union of the shards' request intervals, as disjoint (start, end)
    pairs. Each sample holds until the next one, good or missing (the last for
    ``interval_s``); only the part of that span inside ``generating``
    counts. ``occupancy``: the time-weighted mean of running / ``max_num_seqs``;
    ``low_occupancy_s``: the seconds it was below :data:`LOW_OCCUPANCY`; ``mean_waiting``:
    requests queued; ``server_tokens_per_s``: the server's generation-token counter from the
    first sample to the last over the generating seconds between them. None where no
    sample falls on generating time (or, for the occupancy columns, ``max_num_seqs`` is
    unknown).
    """
    ordered = sorted(samples, key=lambda s: float(s["t"]))
    good = [s for s in ordered if _is_good(s)]
    figures: dict[str, Any] = {
        "metrics_samples": len(good),
        "metrics_missing": len(ordered) - len(good),
        "occupancy": None,
        "low_occupancy_s": None,
        "mean_waiting": None,
        "server_tokens_per_s": None,
    }
    if not good or not generating:
        return figures
    covered = running = waiting = low = 0.0
    for index, sample in enumerate(ordered):
        if not _is_good(sample):
            continue
        start = float(sample["t"])
        # Until the next sample, good or missing; the last one for one interval.
        end = float(ordered[index + 1]["t"]) if index + 1 < len(ordered) else start + (interval_s or 0.0)
        weight = _overlap(start, end, generating)
        if weight <= 0:
            continue
        covered += weight
        running += weight * float(sample["running"])
        waiting += weight * float(sample["waiting"])
        if max_num_seqs and float(sample["running"]) < LOW_OCCUPANCY * max_num_seqs:
            low += weight
    if covered > 0:
        figures["mean_waiting"] = waiting / covered
        if max_num_seqs:
            figures["occupancy"] = running / covered / max_num_seqs
            figures["low_occupancy_s"] = low
    first, last = good[0], good[-1]
    window = _overlap(float(first["t"]), float(last["t"]), generating)
    counted = float(last["generation_tokens"]) - float(first["generation_tokens"])
    if window > 0 and counted >= 0:
        figures["server_tokens_per_s"] = counted / window
    return figures
