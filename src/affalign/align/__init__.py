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
* :mod:`~affalign.align.comparisons` — scores with ceilings, intervals and tests; tendency,
  (differential) steerability, the baseline, model-level summary, sensitivity;
* :mod:`~affalign.align.stage` — joins, drop policy and the stage's files.
"""
