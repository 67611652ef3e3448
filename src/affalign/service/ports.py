"""A port for one model's server, and proof that what answers on it is that server.

vLLM cannot be told to bind port 0 and report the port, so the wrapper picks a free port
and vLLM binds it a few seconds later (before loading the model). On a shared node another
job can take the port in between: vLLM then exits with "Address already in use", and the
wrapper starts it again on another port (:func:`address_in_use`). Until vLLM has bound,
another job's server may also answer ``/health`` on that port: the wrapper publishes the
address only once the socket listening there belongs to a process of its own server's
session (:func:`listening_pids`, from ``/proc``) and ``/v1/models`` serves this model's name
(:func:`serves_model`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from affalign.service.client import GET_ERRORS, get_text

# How vLLM's failed bind reads in its log (errno 98 on Linux).
ADDRESS_IN_USE_MARKERS = ("Address already in use", "[Errno 98]")
LISTEN_STATE = "0A"


def address_in_use(log_text: str) -> bool:
    """Whether a server log says the server could not bind its port."""
    return any(marker in log_text for marker in ADDRESS_IN_USE_MARKERS)


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on ``port`` (any local address), from /proc/net."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, state, inode = fields[1], fields[3], fields[9]
            if state == LISTEN_STATE and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def listening_pids(port: int, candidates: Iterable[int]) -> set[int]:
    """Those of the processes ``candidates`` that hold a socket listening on ``port``."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return set()
    owners: set[int] = set()
    for pid in candidates:
        try:
            descriptors = os.scandir(f"/proc/{pid}/fd")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        with descriptors:
            for descriptor in descriptors:
                try:
                    if os.readlink(descriptor.path) in wanted:
                        owners.add(pid)
                        break
                except OSError:
                    continue
    return owners


def serves_model(url: str, name: str, timeout: float = 5.0) -> bool:
    """Whether the OpenAI-compatible server at ``url`` lists a model called ``name``."""
    try:
        listing = json.loads(get_text(f"{url}/v1/models", timeout=timeout))
    except GET_ERRORS:
        return False
    if not isinstance(listing, dict):
        return False
    return any(entry.get("id") == name for entry in listing.get("data", []) if isinstance(entry, dict))
