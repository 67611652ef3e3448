"""The align stage: label distributions, 1 − Jensen–Shannon distance, comparisons.

Reads every generation shard and human posts table with their affect tables from the
classify stage; writes ``results/align/{classifier}/`` (alignment, partisan baseline,
alignment matrix, liberal tendency, steerability, below-baseline shares, model-level
summary, counting sensitivity, distributions, dropped generations). Rule ``align``
(``workflow/rules/align.smk``) drives :func:`~affalign.align.stage.run_align_stage`.

* :mod:`~affalign.align.divergence` — the one Jensen–Shannon kernel and smoothing;
* :mod:`~affalign.align.distributions` — label counts per cell;
* :mod:`~affalign.align.resampling` — bootstrap and permutation draws of label patterns,
  the published Wilcoxon tendency test;
* :mod:`~affalign.align.inference` — size-corrected alignment and two-stage (topics, then
  posts) bootstrap means; intervals, sign-flip tests and Holm/BH are :mod:`affalign.stats`;
* :mod:`~affalign.align.scoring` — one topic's cells resampled and scored under each
  counting variant, with ceilings and permutation tests;
* :mod:`~affalign.align.comparisons` — the tables over topics: scores with ceilings,
  intervals and tests, the baseline, tendency, (differential) steerability;
* :mod:`~affalign.align.summary` — the model-level summary, below-baseline shares and the
  counting sensitivity;
* :mod:`~affalign.align.stage` — joins, drop policy and the stage's files;
* :mod:`~affalign.align.robustness` and :mod:`~affalign.align.samples` — agreement between
  classifiers, and posts with every classifier's labels; :mod:`~affalign.align.gold` — a
  classifier against a gold file of human-labelled posts (per-label F1 with intervals);
* :mod:`~affalign.align.simulation` — simulated studies with a known truth (benchmarks,
  tests, design checks; never a study's own results).

The inference kernels other stages build on (the design stage's precision predictions) are
exported here.
"""

from affalign.align.comparisons import bootstrap_comparisons
from affalign.align.divergence import alignment
from affalign.align.gold import GoldError, read_gold, write_gold_f1, write_gold_posts
from affalign.align.inference import (
    centred_replicates,
    corrected_alignment,
    hierarchical_means,
    label_sums,
    pattern_moments,
)
from affalign.align.resampling import resample_pattern_counts
from affalign.align.robustness import write_robustness
from affalign.align.samples import write_label_samples
from affalign.align.scoring import BootstrapSettings, Counting, post_vectors
from affalign.align.simulation import GROUP_RATES, Populations, rates_at, simulated_studies
from affalign.align.simulation import LABELS as SIMULATED_LABELS
from affalign.align.stage import AlignSettings, DropPolicy, align_params, run_align_stage

__all__ = [
    "GROUP_RATES",
    "SIMULATED_LABELS",
    "AlignSettings",
    "BootstrapSettings",
    "Counting",
    "DropPolicy",
    "GoldError",
    "Populations",
    "align_params",
    "alignment",
    "bootstrap_comparisons",
    "centred_replicates",
    "corrected_alignment",
    "hierarchical_means",
    "label_sums",
    "pattern_moments",
    "post_vectors",
    "rates_at",
    "read_gold",
    "resample_pattern_counts",
    "run_align_stage",
    "simulated_studies",
    "write_gold_f1",
    "write_gold_posts",
    "write_label_samples",
    "write_robustness",
]
