"""Figures for the report: alignment and representativeness heatmaps, comparison bars.

Reads the align and opinions stages' tables; writes PNGs under ``results/figures/``
(rules ``plot_alignment_heatmap``, ``plot_comparisons`` in ``workflow/rules/report.smk``
and ``plot_representativeness`` in ``workflow/rules/opinions.smk``), through
:mod:`~affalign.figures.plots`.
"""

from affalign.figures.plots import (
    plot_alignment_heatmap,
    plot_baseline_comparison,
    plot_design,
    plot_label_distributions,
    plot_opinion_steering,
    plot_representativeness_heatmap,
    plot_steerability,
    plot_tendency,
)

__all__ = [
    "plot_alignment_heatmap",
    "plot_baseline_comparison",
    "plot_design",
    "plot_label_distributions",
    "plot_opinion_steering",
    "plot_representativeness_heatmap",
    "plot_steerability",
    "plot_tendency",
]
