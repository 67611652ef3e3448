"""Files the workflow writes follow the umask, as a plain ``open`` would (``mkstemp``, which
the atomic writer uses for its temporary file, alone would leave them 0600: unreadable to a
lab's collaborators on a shared filesystem)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import polars as pl
import pytest
from conftest import run_snakemake, write_config

from affalign.figures.plots import plot_tendency
from affalign.io import place_file, write_csv, write_table


@contextlib.contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


TENDENCY = pl.DataFrame(
    {
        "issue": ["covid-19"],
        "model": ["m"],
        "prompt_type": ["default"],
        "tendency": [0.1],
        "tendency_low": [0.0],
        "tendency_high": [0.2],
        "p_value": [0.5],
    }
)


@pytest.mark.parametrize(
    ("mask", "expected"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)], ids=["022", "027", "002"]
)
def test_parquet_csv_and_png_follow_the_umask(tmp_path, mask, expected):
    frame = pl.DataFrame({"a": [1, 2]})
    with umask(mask):
        write_table(frame, tmp_path / "table.parquet", {"stage": "test"})
        write_csv(frame, tmp_path / "table.csv")
        plot_tendency(TENDENCY, "tendency", tmp_path / "figure.png")
        place_file(tmp_path / "table.parquet", tmp_path / "placed" / "table.parquet")
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ["table.parquet", "table.csv", "figure.png", "placed/table.parquet"]:
        assert mode(tmp_path / name) == expected, name


def test_a_workflow_output_follows_the_umask(study):
    workdir, config = study
    configfile = write_config(workdir / "study.yaml", config)
    target = "results/human/covid-19/posts.parquet"
    # 027: group-readable, not world-readable; neither mkstemp's 0600 nor a fixed 0644.
    with umask(0o027):
        result = run_snakemake(workdir, "--", target, configfile=configfile, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for written in (workdir / "results" / "human" / "covid-19").iterdir():
        assert mode(written) == 0o640, written
