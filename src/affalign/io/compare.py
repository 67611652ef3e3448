"""Compare two ``results/`` trees table by table: ``python -m affalign.io.compare OLD NEW``.

Every parquet and CSV file under either tree is matched by its path relative to the tree
(``--rename OLD_PREFIX=NEW_PREFIX`` maps a renamed folder). Two tables are equal when
they have the same columns, the same rows in the same order, and numbers that agree within
``--tolerance`` (absolute); nulls must sit in the same places. Parquet provenance is
compared too, at any depth, except for what differs between two clean runs of one config:
keys that name code, times, durations, process ids and hosts (:data:`VOLATILE_PROVENANCE`;
more with ``--ignore-provenance``), and the job account (:data:`RUN_SPECIFIC_TABLES`, the
timeline of the run itself; ``--compare-job-account`` compares it too). It says what it
ignored. Exits 1 and lists every difference when any table differs or exists on one side
only.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from affalign.io.parquet import read_provenance
from affalign.io.tables import read_table

TABLE_SUFFIXES = (".parquet", ".csv")
# Provenance keys that differ between two clean runs of one config: code, times,
# durations, process ids and the host that served (see service.consumer.shard_timing and
# service.client's server fields).
VOLATILE_PROVENANCE = (
    "shard_wall_s",
    "server_healthy_after_s",
    "output_tokens_per_s",
    "code",
    "affalign_file",
    "began_at",
    "ended_at",
    "server_started_at",
    "server_pid",
    "server_host",
)
# Tables that record the run itself (when each server and shard ran), relative to the tree.
RUN_SPECIFIC_TABLES = ("services/job_account.parquet", "services/job_account.csv")


def tables_under(root: Path, renames: Mapping[str, str]) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*")):
        # The shard store holds copies of shards that are compared where they are published.
        if path.suffix not in TABLE_SUFFIXES or not path.is_file() or ".shard-store" in path.parts:
            continue
        relative = path.relative_to(root).as_posix()
        for old, new in renames.items():
            if relative.startswith(old):
                relative = new + relative[len(old) :]
        found[relative] = path
    return found


def _values_differ(left: Any, right: Any, tolerance: float) -> bool:
    if left is None or right is None:
        return (left is None) != (right is None)
    if left == right:
        return False
    # CSV cells are text: numbers written from floats compare as numbers.
    if isinstance(left, float | str) and isinstance(right, float | str):
        try:
            a, b = float(left), float(right)
        except (TypeError, ValueError):
            return True
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) != math.isnan(b)
        return abs(a - b) > tolerance
    return True


def frame_differences(old: pl.DataFrame, new: pl.DataFrame, tolerance: float) -> list[str]:
    """What differs between two tables (empty when they are equal)."""
    if old.columns != new.columns:
        return [f"columns {old.columns} != {new.columns}"]
    if old.height != new.height:
        return [f"{old.height} rows != {new.height} rows"]
    problems = []
    for column in old.columns:
        for row, (a, b) in enumerate(zip(old[column].to_list(), new[column].to_list(), strict=True)):
            if _values_differ(a, b, tolerance):
                problems.append(f"column {column!r} row {row + 1}: {a!r} != {b!r}")
                break
    return problems


def _stable(provenance: Any, ignored: Sequence[str]) -> Any:
    """Provenance without the keys that name code or time, at any depth (an affect table
    carries its shard's provenance inside its own)."""
    if isinstance(provenance, Mapping):
        return {key: _stable(value, ignored) for key, value in provenance.items() if key not in ignored}
    return provenance


def compare_trees(
    old_root: Path,
    new_root: Path,
    *,
    tolerance: float = 1e-12,
    renames: Mapping[str, str] | None = None,
    ignore_provenance: Iterable[str] = VOLATILE_PROVENANCE,
    ignore_tables: Iterable[str] = RUN_SPECIFIC_TABLES,
) -> tuple[int, list[str]]:
    """(tables compared, differences) between two results trees; tables named in
    ``ignore_tables`` (paths relative to the trees) are left out on both sides."""
    skipped = set(ignore_tables)
    old = {name: path for name, path in tables_under(old_root, renames or {}).items() if name not in skipped}
    new = {name: path for name, path in tables_under(new_root, {}).items() if name not in skipped}
    ignored = list(ignore_provenance)
    problems = [f"{name}: only in {old_root}" for name in sorted(old.keys() - new.keys())]
    problems += [f"{name}: only in {new_root}" for name in sorted(new.keys() - old.keys())]
    compared = 0
    for name in sorted(old.keys() & new.keys()):
        compared += 1
        problems += [
            f"{name}: {p}" for p in frame_differences(read_table(old[name]), read_table(new[name]), tolerance)
        ]
        if name.endswith(".parquet"):
            before = _stable(read_provenance(old[name]), ignored)
            after = _stable(read_provenance(new[name]), ignored)
            for key in sorted(before.keys() | after.keys()):
                if before.get(key) != after.get(key):
                    problems.append(f"{name}: provenance {key!r}: {before.get(key)!r} != {after.get(key)!r}")
    return compared, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--tolerance", type=float, default=1e-12)
    parser.add_argument("--rename", action="append", default=[], metavar="OLD_PREFIX=NEW_PREFIX")
    parser.add_argument("--ignore-provenance", action="append", default=list(VOLATILE_PROVENANCE))
    parser.add_argument(
        "--compare-job-account",
        action="store_true",
        help="compare the job account too (a run's own timeline)",
    )
    args = parser.parse_args(argv)
    renames = dict(item.split("=", 1) for item in args.rename)
    ignored_tables = () if args.compare_job_account else RUN_SPECIFIC_TABLES
    compared, problems = compare_trees(
        args.old,
        args.new,
        tolerance=args.tolerance,
        renames=renames,
        ignore_provenance=args.ignore_provenance,
        ignore_tables=ignored_tables,
    )
    for problem in problems:
        print(problem)
    print(
        f"ignored: provenance keys {', '.join(dict.fromkeys(args.ignore_provenance))} (at any depth)"
        + (
            f"; tables {', '.join(ignored_tables)} (--compare-job-account compares them)"
            if ignored_tables
            else ""
        )
    )
    print(f"{compared} tables compared, {len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
