"""Simulated studies with a known truth, for checking the align stage's inference.

Pure functions (a generator in, arrays or frames out, no I/O). Used by the coverage
benchmark (``benchmarks/bench_coverage.py``), the tests of interval coverage and the design
predictions; never by a study's own results.

Conventions:

* A *population* is 8 label rates. In ``multi_label`` populations each post carries each label
  independently with its rate (as the sigmoid classifiers give); otherwise each post carries
  exactly one label, drawn with probabilities proportional to the rates.
* The true alignment of two populations is ``1 − JSD`` of their normalised label rates (the
  quantity a cell's label counts estimate, whole counting, unlabelled posts dropped).
* A population at a target alignment from :data:`GROUP_RATES` mixes in :data:`OTHER_RATES`
  (bisection on the mixing weight).
* A cell is summarised by its *pattern counts*: how many of its posts carry each of the
  ``2**8`` label patterns (bit ``i`` of a pattern index = label ``i``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from affalign.align.divergence import alignment as population_alignment

LABELS = tuple(f"label{i}" for i in range(8))
GROUP_RATES = np.array([0.30, 0.12, 0.20, 0.25, 0.15, 0.08, 0.18, 0.22])
OTHER_RATES = np.array([0.05, 0.35, 0.05, 0.10, 0.40, 0.25, 0.04, 0.10])
PATTERN_FLAGS = (np.arange(2 ** len(LABELS))[:, None] >> np.arange(len(LABELS))[None, :]) & 1 > 0


def rates_at(target: float) -> np.ndarray:
    """Label rates whose true alignment with :data:`GROUP_RATES` is ``target``."""
    if target >= 1:
        return GROUP_RATES.copy()
    low, high = 0.0, 1.0
    for _ in range(60):
        mix = (low + high) / 2
        if population_alignment(GROUP_RATES, (1 - mix) * GROUP_RATES + mix * OTHER_RATES) > target:
            low = mix
        else:
            high = mix
    return (1 - low) * GROUP_RATES + low * OTHER_RATES


def pattern_probabilities(rates: np.ndarray, multi_label: bool) -> np.ndarray:
    """Probability of each of the ``2**labels`` label patterns for a post of the population."""
    if multi_label:
        return np.prod(np.where(PATTERN_FLAGS, rates, 1 - rates), axis=1)
    single = np.zeros(PATTERN_FLAGS.shape[0])
    single[1 << np.arange(len(rates))] = rates / rates.sum()
    return single


def draw_cells(
    rng: np.random.Generator, rates: np.ndarray, n: int, cells: int, multi_label: bool
) -> np.ndarray:
    """Pattern counts of ``cells`` independent cells of ``n`` posts: (cells × patterns)."""
    return rng.multinomial(n, pattern_probabilities(rates, multi_label), size=cells)


def posts_frame(pattern_counts: np.ndarray, keys: dict[str, Sequence[str]]) -> pl.DataFrame:
    """Per-post rows (``y_<label>`` booleans) of cells given by their pattern counts.

    ``keys`` maps each key column to one value per cell (row of ``pattern_counts``)."""
    counts = np.asarray(pattern_counts, dtype=np.int64)
    per_cell = counts.sum(axis=1)
    cell_of_post = np.repeat(np.arange(counts.shape[0]), per_cell)
    pattern_of_post = np.repeat(np.tile(np.arange(counts.shape[1]), counts.shape[0]), counts.ravel())
    columns: dict[str, object] = {
        name: pl.Series(name, list(values), dtype=pl.String).gather(cell_of_post)
        for name, values in keys.items()
    }
    flags = PATTERN_FLAGS[pattern_of_post]
    columns.update({f"y_{label}": flags[:, i] for i, label in enumerate(LABELS)})
    return pl.DataFrame(columns)


@dataclass(frozen=True)
class Populations:
    """What a simulated study's posts are drawn from, where not the defaults: the model's
    label rates (one population, or one per prompt type for a steered model; default: the
    rates at the study's ``truth``), the conservatives' (default: :data:`GROUP_RATES`, as
    the liberals'), and whether posts carry several labels."""

    model_rates: np.ndarray | dict[str, np.ndarray] | None = None
    conservative_rates: np.ndarray | None = None
    multi_label: bool = True


def simulated_studies(
    rng: np.random.Generator,
    studies: int,
    topics: int,
    model_posts: int,
    group_posts: int,
    truth: float,
    prompt_types: Sequence[str] = ("default",),
    populations: Populations = Populations(),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Model and human posts of ``studies`` independent studies, one issue each (``s0000``, …).

    Each study has ``topics`` topics (``t0``, …), two groups (``liberal``, ``conservative``)
    of ``group_posts`` posts drawn from :data:`GROUP_RATES` (so the true baseline is 1 and the
    true tendency 0), and one model ``m`` with a cell of ``model_posts`` posts per prompt type
    drawn at true alignment ``truth`` with both groups (true steerability 0).
    ``populations``, when given, replaces the conservatives' population and the model's
    (``truth`` is then unused) or draws single-label posts.
    """
    multi_label = populations.multi_label
    conservative_rates, model_rates = populations.conservative_rates, populations.model_rates
    issues = [f"s{i:04d}" for i in range(studies)]
    model_keys = [(issue, f"t{t}", p) for issue in issues for t in range(topics) for p in prompt_types]
    human_keys = [
        (issue, f"t{t}", g) for issue in issues for t in range(topics) for g in ("liberal", "conservative")
    ]
    if model_rates is None:
        model_rates = rates_at(truth)
    populations = model_rates if isinstance(model_rates, dict) else dict.fromkeys(prompt_types, model_rates)
    model_counts = np.zeros((len(model_keys), PATTERN_FLAGS.shape[0]), dtype=np.int64)
    for prompt_type in prompt_types:
        rows = np.array([k[2] == prompt_type for k in model_keys])
        model_counts[rows] = draw_cells(
            rng, populations[prompt_type], model_posts, int(rows.sum()), multi_label
        )
    human_counts = np.zeros((len(human_keys), PATTERN_FLAGS.shape[0]), dtype=np.int64)
    liberal_rows = np.array([k[2] == "liberal" for k in human_keys])
    human_counts[liberal_rows] = draw_cells(
        rng, GROUP_RATES, group_posts, int(liberal_rows.sum()), multi_label
    )
    other = GROUP_RATES if conservative_rates is None else conservative_rates
    human_counts[~liberal_rows] = draw_cells(rng, other, group_posts, int((~liberal_rows).sum()), multi_label)
    model = posts_frame(
        model_counts,
        {
            "model": ["m"] * len(model_keys),
            "prompt_type": [k[2] for k in model_keys],
            "issue": [k[0] for k in model_keys],
            "topic": [k[1] for k in model_keys],
        },
    )
    human = posts_frame(
        human_counts,
        {
            "issue": [k[0] for k in human_keys],
            "topic": [k[1] for k in human_keys],
            "group": [k[2] for k in human_keys],
        },
    )
    return model, human
