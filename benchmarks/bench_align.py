"""Align-stage speed at the paper's scale, against a straightforward pandas implementation.

Builds a synthetic classified table the size of the study in He et al. (2024): 36 models ×
50 topics (26 COVID-19 + 24 Roe v. Wade) × 3 prompt types × 2,000 posts, 11 labels, plus
2,000 human posts per topic and group. Times (a) affalign's align stage with the config's
defaults — scores, bias-corrected scores, noise ceilings, bootstrap intervals, permutation
tests per cell, the partisan baseline, liberal tendency, (differential) steerability, the
model-level summary and the counting sensitivity table — and (b) pandas computing the
plug-in point estimates (group-by sums and scipy's jensenshannon per pair), in the same run;
prints both times (wall clock and CPU), the ratio, the peak memory and the whole run's time.

BLAS runs single-threaded, as in the workflow's align job (Snakemake sets
``OPENBLAS_NUM_THREADS`` to the job's threads, 1).

Usage: ``python benchmarks/bench_align.py [--models 36] [--posts 2000] [--replicates 200]
[--permutations 199]``
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

# Before numpy loads: the align job's BLAS has the job's one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from affalign.align.comparisons import BootstrapSettings, bootstrap_comparisons  # noqa: E402

LABELS = [
    "anger", "anticipation", "disgust", "fear", "joy", "love",
    "optimism", "pessimism", "sadness", "surprise", "trust",
]  # fmt: skip
ISSUES = {"covid-19": 26, "roe-v-wade": 24}
PROMPT_TYPES = ["default", "liberal", "conservative"]
GROUPS = ["liberal", "conservative"]


def synthetic(models: int, posts: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    topics = [(issue, f"topic-{t:02d}") for issue, count in ISSUES.items() for t in range(count)]
    model_cells = [
        (f"model-{m:02d}", p, i, t) for m in range(models) for p in PROMPT_TYPES for i, t in topics
    ]
    human_cells = [(i, t, g) for i, t in topics for g in GROUPS]

    def table(cells: list[tuple], names: list[str]) -> pl.DataFrame:
        rates = rng.uniform(0.02, 0.5, size=(len(cells), len(LABELS)))
        flags = rng.random((len(cells) * posts, len(LABELS))) < np.repeat(rates, posts, axis=0)
        columns = {
            name: pl.Series(name, [cell[k] for cell in cells], dtype=pl.Categorical).gather(
                np.repeat(np.arange(len(cells)), posts)
            )
            for k, name in enumerate(names)
        }
        columns.update({f"y_{label}": flags[:, j] for j, label in enumerate(LABELS)})
        return pl.DataFrame(columns).with_columns(pl.col(names).cast(pl.String))

    return (
        table(model_cells, ["model", "prompt_type", "issue", "topic"]),
        table(human_cells, ["issue", "topic", "group"]),
    )


def pandas_point_estimates(model, human):
    from scipy.spatial.distance import jensenshannon

    flags = [f"y_{label}" for label in LABELS]
    model_counts = model.groupby(["model", "prompt_type", "issue", "topic"])[flags].sum()
    human_counts = human.groupby(["issue", "topic", "group"])[flags].sum()
    scores = []
    for (m, p, issue, topic), counts in model_counts.iterrows():
        for group in GROUPS:
            other = human_counts.loc[(issue, topic, group)]
            scores.append((m, p, issue, topic, group, 1 - jensenshannon(counts.values, other.values, base=2)))
    baseline = {
        (issue, topic): 1 - jensenshannon(human_counts.loc[(issue, topic, "liberal")].values,
                                          human_counts.loc[(issue, topic, "conservative")].values, base=2)
        for issue, topic, _ in human_counts.index
    }  # fmt: skip
    return scores, baseline


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=36)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--replicates", type=int, default=BootstrapSettings.replicates)
    parser.add_argument("--permutations", type=int, default=BootstrapSettings.permutations)
    args = parser.parse_args()
    run_began = time.perf_counter()
    began = time.perf_counter()
    model, human = synthetic(args.models, args.posts)
    built = time.perf_counter() - began
    print(
        f"synthetic table: {model.height:,} model posts, {human.height:,} human posts, built in {built:.1f} s"
    )

    began = time.perf_counter()
    points = bootstrap_comparisons(model, human, LABELS, GROUPS, BootstrapSettings(0, 0.95, 1, 0))
    point_s = time.perf_counter() - began
    began, cpu_began = time.perf_counter(), time.process_time()
    settings = BootstrapSettings(args.replicates, 0.95, 1, args.permutations)
    results = bootstrap_comparisons(model, human, LABELS, GROUPS, settings, sensitivity=True)
    ours_s, ours_cpu = time.perf_counter() - began, time.process_time() - cpu_began
    peak_after_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    model_pd, human_pd = model.to_pandas(), human.to_pandas()
    began = time.perf_counter()
    scores, baseline = pandas_point_estimates(model_pd, human_pd)
    pandas_s = time.perf_counter() - began

    check = (
        points["alignment"].sort(["model", "prompt_type", "issue", "topic", "group"])["alignment"].to_numpy()
    )
    reference = np.array([s[-1] for s in sorted(scores)])
    assert np.allclose(check, reference), "point estimates differ from the pandas reference"
    counts = (
        points["alignment"].height,
        len(baseline),
        results["tendency"].height,
        results["steerability"].height,
    )
    print("cells: {:,} model x group scores, {} baselines, {} tendencies, {} steerabilities".format(*counts))
    print(f"(a) affalign align stage, point estimates only: {point_s:7.1f} s")
    print(f"(a) affalign align stage, {args.replicates} bootstrap replicates and ceiling draws, "
          f"{args.permutations} permutations per cell, 4 counting variants: {ours_s:7.1f} s "
          f"(CPU {ours_cpu:.1f} s)")  # fmt: skip
    print(f"(b) pandas + scipy point estimates:               {pandas_s:7.1f} s")
    print(f"ratio (b)/(a) point estimates: {pandas_s / point_s:.1f}x; full stage vs pandas points: "
          f"{pandas_s / ours_s:.2f}x")  # fmt: skip
    print(f"peak memory (RSS): {peak_after_ours:,.0f} MiB after (a); "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB overall")  # fmt: skip
    print(f"whole benchmark: {time.perf_counter() - run_began:.1f} s wall clock "
          f"(budget: 5 minutes on two cores)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
