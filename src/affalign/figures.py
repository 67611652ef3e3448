"""Figures: the alignment heatmap (models × topics, one panel per human group).

Colour scale is fixed to [0, 1] (1 − JSD) in every panel so panels compare directly;
the partisan baseline is the last row of each panel. Output is deterministic (no
timestamps in the PNG metadata).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl

BASELINE_ROW = "partisan baseline"


def heatmap_panels(alignment: pl.DataFrame, baseline: pl.DataFrame, groups: list[str]):
    """Per group: row labels, column labels and the score matrix (NaN where undefined)."""
    columns = sorted((alignment["issue"] + "/" + alignment["topic"]).unique().to_list())
    rows = (
        alignment.select((pl.col("model") + " · " + pl.col("prompt_type")).alias("row"))
        .unique()
        .sort("row")["row"]
        .to_list()
    )
    base_values = {f"{i}/{t}": a for i, t, a in baseline.select("issue", "topic", "alignment").iter_rows()}
    panels = []
    for group in groups:
        subset = alignment.filter(pl.col("group") == group)
        lookup = {
            (f"{m} · {p}", f"{i}/{t}"): a
            for m, p, i, t, a in subset.select(
                "model", "prompt_type", "issue", "topic", "alignment"
            ).iter_rows()
        }
        matrix = np.full((len(rows) + 1, len(columns)), np.nan)
        for r, row in enumerate(rows):
            for c, column in enumerate(columns):
                value = lookup.get((row, column))
                matrix[r, c] = np.nan if value is None else value
        for c, column in enumerate(columns):
            value = base_values.get(column)
            matrix[len(rows), c] = np.nan if value is None else value
        panels.append((group, [*rows, BASELINE_ROW], columns, matrix))
    return panels


def plot_alignment_heatmap(
    alignment: pl.DataFrame, baseline: pl.DataFrame, groups: list[str], title: str, path: str | Path
) -> None:
    panels = heatmap_panels(alignment, baseline, groups)
    n_rows, n_cols = len(panels[0][1]), len(panels[0][2])
    width = max(6.0, 1.0 + 0.9 * n_cols) * len(panels)
    height = max(3.0, 1.5 + 0.42 * n_rows)
    figure, axes = plt.subplots(
        1, len(panels), figsize=(width, height), squeeze=False, constrained_layout=True
    )
    image = None
    for axis, (group, row_labels, column_labels, matrix) in zip(axes[0], panels, strict=True):
        image = axis.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        axis.set_xticks(range(len(column_labels)), column_labels, rotation=45, ha="right", fontsize=8)
        axis.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
        axis.axhline(len(row_labels) - 1.5, color="white", linewidth=2)
        axis.set_title(f"compared with {group} posts", fontsize=10)
        for (r, c), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                colour = "black" if value > 0.6 else "white"
                axis.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes[0].tolist(), label="alignment (1 − JSD, base 2)", shrink=0.8)
    figure.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=120, metadata={"Software": None})
    plt.close(figure)
    temporary.replace(path)
