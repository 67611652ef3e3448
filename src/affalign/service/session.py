"""The server's process session, and stopping all of it on every way out.

The server runs in a session of its own (``start_new_session``); vLLM's ``EngineCore``
ignores SIGTERM and, when the API server dies, is re-parented and keeps its memory (and on a
GPU node, the GPU), so stopping only the server process is not enough: every member of the
session is signalled (:func:`stop_session`). The wrapper's own death (Snakemake kills every
job of a group with SIGKILL when one fails) is covered by a small guard process that
outlives it (:class:`SessionGuard`), and the server process asks the kernel for SIGTERM when
the wrapper dies (:func:`die_with_parent`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

# SIGTERM first: the API server shuts its engine down in order. Whatever of the server's
# session is left after the grace period gets SIGKILL.
STOP_GRACE_S = 30.0
# With the API server already gone nobody shuts the engine down in order, and its
# EngineCore ignores SIGTERM (seen with vLLM 0.32): a short grace is enough.
LEADERLESS_GRACE_S = 5.0


def die_with_parent() -> None:
    """In the server process: receive SIGTERM when the service wrapper dies, even by SIGKILL."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def session_members(session: int) -> list[int]:
    """Live processes (zombies excluded) of the session ``session``, read from /proc."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # After the command name (in parentheses, may hold spaces): state, ppid, pgrp, session.
        state, _ppid, _pgrp, sid = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(sid) == session and state not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def signal_session(session: int, signum: int) -> None:
    """Send ``signum`` to the server's process group and to every other process of its session."""
    members = session_members(session)
    if not members:  # the id may since name another process group: leave it alone
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(session, signum)
    for pid in members:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def stop_session(
    session: int, leader: subprocess.Popen | None = None, grace_s: float = STOP_GRACE_S
) -> list[int]:
    """Stop every process of the server's session, whether its leader still runs or not.

    SIGTERM to all of them; whatever is left once the session is empty or the grace period
    has passed (:data:`LEADERLESS_GRACE_S` when the leader, the API server, is already
    gone) gets SIGKILL. ``leader`` is the server's ``Popen`` when this process started it
    (it is then reaped). Returns the pids that needed SIGKILL.
    """

    def alive() -> list[int]:
        if leader is not None:
            leader.poll()  # reap the leader, or it stays a member as a zombie
        return session_members(session)

    leader_alive = session in alive()
    signal_session(session, signal.SIGTERM)
    deadline = time.monotonic() + (grace_s if leader_alive else min(grace_s, LEADERLESS_GRACE_S))
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    stubborn = alive()
    if stubborn:
        signal_session(session, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
    if leader is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            leader.wait(timeout=10.0)
    return stubborn


class SessionGuard:
    """A separate process that stops the server's session once this process has ended.

    The guard reads its stdin, the read end of a pipe whose write end only this process
    holds: the read returns when this process closes it (at the end of a normal stop) or
    when the kernel does (this process died, even by SIGKILL). The guard then stops what
    is left of the session and removes the ``folders`` the wrapper would have removed. It
    runs in a session of its own and ignores SIGTERM, SIGINT and SIGHUP, so the signals
    that end the wrapper do not end it too.
    """

    def __init__(self, session: int, grace_s: float = STOP_GRACE_S, folders: tuple[Path, ...] = ()) -> None:
        read_end, self._write_end = os.pipe()
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from affalign.service.session import guard_session; "
                    "guard_session(int(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:])",
                    str(session),
                    str(grace_s),
                    *(str(Path(folder).resolve()) for folder in folders),
                ],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(read_end)

    def release(self, timeout_s: float = 60.0) -> None:
        """This process has stopped the session itself: let the guard check and end."""
        with contextlib.suppress(OSError):
            os.close(self._write_end)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)


def guard_session(session: int, grace_s: float, *folders: str) -> None:
    """The guard process's body (see :class:`SessionGuard`)."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    stop_session(session, grace_s=grace_s)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
