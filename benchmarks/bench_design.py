"""Do the design job's predictions hold? Predicted against realized precision, in one run.

For each simulated lab (topics, posts per group cell, true baseline between the groups) the
design job predicts from one observed sample of human posts; then studies are simulated from
the true populations and scored end to end by the align stage (``bootstrap_comparisons``).
Prints per posts-per-shard option: predicted and realized mean 95 % half-widths (per cell
and of the model-level mean, a model writing like the liberals) with their ratio, and the
realized power of the tendency and steerability tests at the predicted minimum detectable
effects (the prediction says 80 %). See ``affalign.design.validation``.

Usage: ``python benchmarks/bench_design.py [--studies 200] [--power-studies 400] [--quick]``
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affalign.design.validation import (  # noqa: E402
    Lab,
    realized_halfwidths,
    realized_steering_power,
    realized_tendency_power,
)

LABS = (
    Lab(topics=10, group_posts=300, baseline=0.8, n_per_shard=25),
    Lab(topics=5, group_posts=100, baseline=0.8, n_per_shard=24),
    Lab(topics=10, group_posts=1000, baseline=0.9, n_per_shard=50),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=200, help="studies per half-width row")
    parser.add_argument("--power-studies", type=int, default=400, help="studies per power row")
    parser.add_argument("--quick", action="store_true", help="one lab, 60/200 studies (about 2 minutes)")
    args = parser.parse_args()
    labs = LABS[:1] if args.quick else LABS
    studies, power_studies = (60, 200) if args.quick else (args.studies, args.power_studies)
    start = time.time()
    print("lab: topics / group posts per cell / true baseline; hw: mean 95 % half-width (liberals)")
    header = ("lab", "n", "cell hw pred", "realized", "ratio", "model hw pred", "realized", "ratio",
              "MDE tend", "power", "MDE steer", "power")  # fmt: skip
    widths = (16, 5, 12, 9, 6, 13, 9, 6, 8, 6, 9, 6)
    print(" ".join(f"{cell:>{width}}" for cell, width in zip(header, widths, strict=True)))
    for index, lab in enumerate(labs):
        predicted = lab.predicted().filter(pl.col("group") == "liberal").sort("n_model")
        name = f"{lab.topics}/{lab.group_posts}/{lab.baseline}"
        for row in predicted.iter_rows(named=True):
            n = row["n_model"]
            cell, level = realized_halfwidths(lab, n, studies, seed=1000 * index + n)
            powers = []
            for effect, realize in ((row["mde_tendency"], realized_tendency_power),
                                    (row["mde_steerability"], realized_steering_power)):  # fmt: skip
                if math.isnan(effect):
                    powers.append("—")
                else:
                    power, _ = realize(lab, n, effect, power_studies, seed=2000 * index + n)
                    powers.append(f"{power:.3f}")
            cell_hw, level_hw = row["cell_halfwidth"], row["model_level_halfwidth"]
            cells = (name, str(n), f"{cell_hw:.4f}", f"{cell:.4f}", f"{cell_hw / cell:.3f}",
                     f"{level_hw:.4f}", f"{level:.4f}", f"{level_hw / level:.3f}",
                     f"{row['mde_tendency']:.3f}", powers[0], f"{row['mde_steerability']:.3f}",
                     powers[1])  # fmt: skip
            print(" ".join(f"{cell:>{width}}" for cell, width in zip(cells, widths, strict=True)), flush=True)
    print(f"({time.time() - start:.0f} s; —: no sign-flip test over so few topics reaches alpha, or not even")
    print(" the other group's distance is detected with 80 % power)")


if __name__ == "__main__":
    main()
