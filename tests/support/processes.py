"""Finding the processes a test started, by a marker in their environment, and stopping them.

Every child inherits its parent's environment unless a program clears it on purpose, so a
variable set before a server, a SLURM daemon or a whole test session starts names all of
their descendants, even those re-parented to init when their parent died (which is how
vLLM's engine processes outlive a killed server).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def processes_with_environment(name: str, value: str) -> dict[int, str]:
    """Live processes (zombies excluded) whose environment has ``name=value``: pid -> command."""
    wanted = f"{name}={value}".encode()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = Path(entry.path, "environ").read_bytes().split(b"\0")
            stat = Path(entry.path, "stat").read_text()
            command = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if wanted in environment and stat[stat.rindex(")") + 2] not in "ZX":
            found[int(entry.name)] = command.strip() or stat[stat.index("(") : stat.rindex(")") + 1]
    return found


def wait_until_gone(name: str, value: str, timeout_s: float) -> dict[int, str]:
    """Wait until no process has ``name=value`` in its environment; return those left after
    ``timeout_s`` (an empty dict when all are gone)."""
    deadline = time.monotonic() + timeout_s
    while (left := processes_with_environment(name, value)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def stop_marked_processes(name: str, value: str, grace_s: float = 20.0) -> dict[int, str]:
    """SIGTERM every process marked ``name=value``, SIGKILL those left after ``grace_s``;
    returns the processes that needed SIGKILL."""
    for pid in processes_with_environment(name, value):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    stubborn = wait_until_gone(name, value, grace_s)
    for pid in stubborn:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until_gone(name, value, 10.0)
    return stubborn
