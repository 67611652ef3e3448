"""Figures for the report: alignment and representativeness heatmaps, comparison bars.

Reads the align and opinions stages' tables; writes PNGs under ``results/figures/``
(rules ``plot_alignment_heatmap``, ``plot_comparisons`` in ``workflow/rules/report.smk``
and ``plot_representativeness`` in ``workflow/rules/opinions.smk``), through
:mod:`~affalign.figures.plots`.
"""
