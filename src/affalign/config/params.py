"""What reruns: the two kinds of values the workflow puts on a model-side job's command line.

Model-side jobs are shell rules that run ``python -m affalign.<stage>.job``. Snakemake's
rerun triggers must tell two kinds of values apart. Its params trigger records ``repr()``
of every params value of a builtin type and leaves out values of any other type
(``snakemake/persistence/__init__.py``: ``Persistence._params`` and
``_serialize_param_builtin``, ``UNREPRESENTABLE``); its code trigger compares the shell
command's text before formatting (``Persistence._code``). So:

* :class:`JsonParams` — what determines a job's output: a dict, recorded as one (a change
  reruns the job), written into the command as JSON.
* :class:`Unrecorded` — how a job runs, never what it writes: not a builtin, so a change
  reruns nothing.

The recorded form is a contract with every finished result: a ``JsonParams`` whose repr
changed (a key added, renamed or reordered) reruns every shard of every study.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from typing import Any


class JsonParams(dict):
    """What determines a job's output, as a dict: recorded by the params trigger exactly as
    a plain dict (the repr is dict's), written into the command as JSON (keys sorted)."""

    def __format__(self, spec: str) -> str:
        return format(json.dumps(self, sort_keys=True), spec)


class Unrecorded:
    """A command-line value that changes how a job runs, never what it writes (the
    interpreter, the checkout's src/, requests in flight, timeouts, an endpoint's limits and
    key variable): not a builtin type, so invisible to the params trigger, and absent from
    the command's text, so changing it reruns nothing. Formats as its text."""

    def __init__(self, text: Any) -> None:
        self.text = str(text)

    def __format__(self, spec: str) -> str:
        return format(self.text, spec)

    def __repr__(self) -> str:
        return f"Unrecorded({self.text!r})"


def json_params(function: Callable[[Any], dict]) -> Callable[[Any], JsonParams]:
    """A params function whose dict goes into the job's command as JSON."""
    return lambda wildcards: JsonParams(function(wildcards))


def unrecorded(function: Callable[[Any], Any]) -> Callable[[Any], Unrecorded]:
    """A params function whose value the rerun triggers do not see."""
    return lambda wildcards: Unrecorded(function(wildcards))


def consumer_operations(config: Mapping[str, Any], model: Mapping[str, Any] | None = None) -> Unrecorded:
    """A shard consumer's operational flags (generation.* limits and, for an endpoint
    ``model`` entry, the endpoint's settings), quoted for the shell: never recorded."""
    generation = config["generation"]
    flags = [
        "--max-in-flight",
        generation["max_in_flight"],
        "--server-start-timeout",
        generation["server_start_timeout_s"],
        "--request-timeout",
        generation["request_timeout_s"],
    ]
    if model is not None and "endpoint" in model:
        flags += ["--endpoint", json.dumps(model["endpoint"], sort_keys=True)]
    return Unrecorded(shlex.join(str(flag) for flag in flags))
