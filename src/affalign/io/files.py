"""Atomic file writes and file hashes (standard library only, cheap to import).

Every file the workflow writes goes through :func:`atomic_write`: a temporary file in the
target's folder, flushed and synced, then renamed over the target, so a reader never sees
half a file and a killed job never leaves one behind. Files get the permissions a plain
``open`` would give under the current umask (``mkstemp`` alone would make them 0600, which
a lab's collaborators on a shared filesystem could not read).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def _umask() -> int:
    # os.umask can only be read by setting it; put it straight back.
    current = os.umask(0o022)
    os.umask(current)
    return current


@contextlib.contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, the file
    written there replaces ``path`` in one rename. On error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if temporary.exists():
            with open(temporary, "rb+") as stream:
                os.fsync(stream.fileno())
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` atomically: ``write(temporary_path)`` fills the file, then it is renamed."""
    with atomic_target(path) as temporary:
        write(temporary)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda temporary: temporary.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def place_file(source: str | Path, target: str | Path) -> None:
    """Put a copy of ``source`` at ``target`` atomically (a hard link where the filesystem allows)."""

    def link_or_copy(temporary: Path) -> None:
        temporary.unlink()
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)

    atomic_write(target, link_or_copy)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_sha256(content: object) -> str:
    """SHA-256 of a JSON-serialisable value, keys sorted (what determines a cached result)."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


SEED_LIMIT = 2**31 - 1


def derive_seed(global_seed: int, *coordinates: object) -> int:
    """A 31-bit seed from the global seed and a unit's coordinates (SHA-256): the same
    coordinates always give the same seed, whichever job or machine asks."""
    key = "\x1f".join(str(part) for part in (global_seed, *coordinates))
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % SEED_LIMIT
