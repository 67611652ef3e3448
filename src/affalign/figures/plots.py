"""Figures: the alignment heatmap (models × topics, one panel per human group), comparison
figures, and the opinion representativeness heatmap (model · context × survey group).

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

from affalign.io import atomic_write

BASELINE_ROW = "partisan baseline"


def matrix_with_reference_row(
    rows: list[str], columns: list[str], cells: dict[tuple[str, str], float], reference: dict[str, float]
) -> np.ndarray:
    """A (rows + 1) × columns matrix of ``cells[(row, column)]`` whose last row holds
    ``reference[column]`` (a baseline); NaN where a value is missing or undefined."""
    matrix = np.full((len(rows) + 1, len(columns)), np.nan)
    for c, column in enumerate(columns):
        for r, row in enumerate(rows):
            value = cells.get((row, column))
            matrix[r, c] = np.nan if value is None else value
        value = reference.get(column)
        matrix[len(rows), c] = np.nan if value is None else value
    return matrix


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
        matrix = matrix_with_reference_row(rows, columns, lookup, base_values)
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
    _save(figure, path)


GROUP_COLOURS = {"liberal": "#3b6fb6", "conservative": "#c0392b"}


def _save(figure, path: str | Path) -> None:
    try:
        # matplotlib picks the format from the name; the temporary file's is ".tmp".
        atomic_write(
            path,
            lambda temporary: figure.savefig(temporary, format="png", dpi=120, metadata={"Software": None}),
        )
    finally:
        plt.close(figure)


def _panels(count: int, width_each: float, height: float):
    figure, axes = plt.subplots(1, max(count, 1), figsize=(width_each * max(count, 1), height), squeeze=False,
                                constrained_layout=True)  # fmt: skip
    return figure, axes[0]


def _summary_of(alignment: pl.DataFrame) -> pl.DataFrame:
    """Means over topics per model · prompt type · group, without intervals (for callers that
    have no model-level summary; the workflow passes ``model_summary``)."""
    columns = [
        "alignment",
        *(c for c in ("alignment_corrected", "ceiling", "ceiling_corrected") if c in alignment.columns),
    ]
    means = alignment.group_by(["model", "prompt_type", "issue", "group"]).agg(pl.col(columns).mean())
    missing = [
        pl.lit(None, pl.Float64).alias(c)
        for c in ("alignment_low", "alignment_high", "alignment_corrected", "corrected_low", "corrected_high",
                  "ceiling", "ceiling_corrected")
        if c not in means.columns
    ]  # fmt: skip
    return means.with_columns(missing)


INTERVAL_GID = "interval"
UNMEASURED_LABEL = "interval outside the measured range (dashed)"


def _whiskers(axis, positions, lows, highs, ok, vertical: bool, colour: str = "dimgrey") -> None:
    """Interval whiskers from each row's low to its high bound, as the table has them (never
    clipped to the bar, so a bar outside its interval would show); solid where the interval
    lies in the range whose coverage was measured (``ok``), dashed elsewhere."""
    positions, lows, highs = (np.asarray(v, dtype=float) for v in (positions, lows, highs))
    ok = np.asarray(ok, dtype=bool)
    drawn = np.isfinite(lows) & np.isfinite(highs)
    for solid in (True, False):
        chosen = drawn & (ok == solid)
        if not chosen.any():
            continue
        style = {"colors": colour, "linewidth": 0.9, "linestyles": "solid" if solid else "dashed"}
        line = axis.vlines if vertical else axis.hlines
        whiskers = line(positions[chosen], lows[chosen], highs[chosen], **style,
                        label=None if solid else UNMEASURED_LABEL)  # fmt: skip
        whiskers.set_gid(INTERVAL_GID)


def _figure_legend(figure, axes, columns: int = 5) -> None:
    """One legend below all panels, each label once (the panels' own would cover their bars)."""
    entries: dict[str, object] = {}
    for axis in np.ravel(axes):
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        handles, labels = list(entries.values()), list(entries)
        figure.legend(handles, labels, loc="outside lower center", ncols=columns, fontsize=7)


def _interval_ok(flags) -> np.ndarray:
    """``interval_ok`` values as booleans (a missing flag counts as measured)."""
    return np.array([True if flag is None else bool(flag) for flag in flags], dtype=bool)


def _grouped_bars(
    axis,
    rows: list[str],
    groups: list[str],
    frame: pl.DataFrame,
    columns: tuple[str, str | None, str | None, str],
) -> None:
    """Bars per row and group with interval whiskers (none where ``low``/``high`` are None)
    and a black tick at ``tick`` (the ceiling)."""
    width = 0.8 / max(len(groups), 1)
    value_column, low_column, high_column, tick_column = columns
    flag = "interval_ok" if "interval_ok" in frame.columns else None
    for g, group in enumerate(groups):
        subset = frame.filter(pl.col("group") == group)

        def column(name: str | None, dtype=pl.Float64) -> pl.Expr:
            return pl.col(name) if name else pl.lit(None, dtype)

        selected = [column(value_column).alias("value"), column(low_column).alias("low"),
                    column(high_column).alias("high"), column(tick_column).alias("tick"),
                    column(flag, pl.Boolean).alias("ok")]  # fmt: skip
        lookup = {r[0]: r[1:] for r in subset.select("row", *selected).iter_rows()}
        positions = np.arange(len(rows)) + g * width - 0.4 + width / 2
        values, lows, highs, ticks = (
            np.array(
                [np.nan if lookup.get(r, (None,) * 5)[k] is None else lookup[r][k] for r in rows], dtype=float
            )
            for k in range(4)
        )
        axis.bar(positions, values, width, label=f"with {group}", color=GROUP_COLOURS.get(group))
        if low_column and high_column:
            ok = _interval_ok([lookup.get(r, (None,) * 5)[4] if flag else True for r in rows])
            _whiskers(axis, positions, lows, highs, ok, vertical=True)
        finite = np.isfinite(ticks)
        if finite.any():
            axis.hlines(ticks[finite], positions[finite] - width / 2, positions[finite] + width / 2,
                        color="black", linewidth=1.5, label="noise ceiling" if g == 0 else None)  # fmt: skip


def plot_baseline_comparison(
    alignment: pl.DataFrame,
    baseline: pl.DataFrame,
    title: str,
    path: str | Path,
    summary: pl.DataFrame | None = None,
) -> None:
    """Mean alignment (over topics) of each model · prompt type with each group against the
    mean partisan baseline (dashed), one column per issue. Top row: the published score and
    each bar's noise ceiling (black tick), without an interval (intervals are on the corrected
    scale only); bottom row: the size-corrected score, its interval and ceiling. Intervals
    come from ``summary`` (the model-level table: topics, then posts); without it the bars
    carry no interval. Whiskers are dashed where ``interval_ok`` is false."""
    _save(baseline_comparison_figure(alignment, baseline, title, summary), path)


def baseline_comparison_figure(
    alignment: pl.DataFrame, baseline: pl.DataFrame, title: str, summary: pl.DataFrame | None = None
):
    """The figure of :func:`plot_baseline_comparison`, unsaved."""
    summary = _summary_of(alignment) if summary is None else summary
    summary = summary.with_columns((pl.col("model") + " · " + pl.col("prompt_type")).alias("row"))
    issues = sorted(summary["issue"].unique().to_list())
    columns = max(len(issues), 1)
    figure, axes = plt.subplots(
        2, columns, figsize=(7.0 * columns, 9.0), squeeze=False, constrained_layout=True
    )
    scales = (
        ("published: 1 − JSD", "alignment", None, None, "ceiling", "alignment"),
        ("size-corrected", "alignment_corrected", "corrected_low", "corrected_high", "ceiling_corrected",
         "alignment_corrected"),
    )  # fmt: skip
    for row_axes, (label, value, low, high, tick, base_column) in zip(axes, scales, strict=True):
        for axis, issue in zip(row_axes, issues, strict=False):
            frame = summary.filter(pl.col("issue") == issue)
            rows = sorted(frame["row"].unique().to_list())
            groups = sorted(frame["group"].unique().to_list())
            _grouped_bars(axis, rows, groups, frame, (value, low, high, tick))
            column = base_column if base_column in baseline.columns else "alignment"
            level = baseline.filter(pl.col("issue") == issue)[column].mean()
            if level is not None:
                axis.axhline(level, color="black", linestyle="--", linewidth=1, label="partisan baseline")
            axis.set_xticks(range(len(rows)), rows, rotation=45, ha="right", fontsize=8)
            # Room for every whisker as the table has it (corrected bounds may pass 1).
            bounds = frame[high].drop_nulls().drop_nans() if high else pl.Series([], dtype=pl.Float64)
            top = max(1.1, float(bounds.max()) + 0.05) if bounds.len() else 1.1
            axis.set_ylim(0, top)
            axis.set_ylabel(f"mean alignment, {label}", fontsize=8)
            axis.set_title(f"{issue}: {label}", fontsize=10)
    figure.suptitle(title, fontsize=11)
    _figure_legend(figure, axes)
    return figure


def _symmetric_limit(bounds: np.ndarray) -> float:
    """Half-width of an x axis centred on 0 that shows every finite bound (at least 0.05)."""
    finite = np.abs(bounds[np.isfinite(bounds)]) if bounds.size else np.array([])
    return max(0.05, float(finite.max()) * 1.1) if finite.size else 0.1


def _interval_bars(axis, labels: list[str], values, lows, highs, colours, ok=None) -> None:
    values, lows, highs = (np.asarray(v, dtype=float) for v in (values, lows, highs))
    positions = np.arange(len(labels))
    axis.barh(positions, values, color=colours)
    ok = np.ones(len(labels), dtype=bool) if ok is None else _interval_ok(ok)
    _whiskers(axis, positions, lows, highs, ok, vertical=False, colour="black")
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.axvline(0, color="black", linewidth=0.8)


def _columns(frame: pl.DataFrame, corrected: tuple[str, ...], published: tuple[str, ...]) -> tuple[str, ...]:
    """The size-corrected columns where the table has them, else the published ones."""
    return corrected if all(c in frame.columns for c in corrected) else published


def _marked(label: str, p_value, smallest=None, alpha: float = 0.05) -> str:
    star = " *" if (p_value is not None and p_value == p_value and p_value < alpha) else ""
    short = (
        f" (min p {smallest:.2g})"
        if (smallest is not None and smallest == smallest and smallest >= alpha)
        else ""
    )
    return f"{label}{star}{short}"


def plot_tendency(tendency: pl.DataFrame, title: str, path: str | Path) -> None:
    """Liberal tendency (alignment with liberals − with conservatives) per model · prompt type,
    size-corrected where the table has it, with intervals; * marks a BH-adjusted p below 0.05
    (the published Wilcoxon p for a table without it). Same x range in every panel."""
    _save(tendency_figure(tendency, title), path)


def tendency_figure(tendency: pl.DataFrame, title: str):
    """The figure of :func:`plot_tendency`, unsaved."""
    value, low, high, p_column = _columns(
        tendency, ("tendency_corrected", "corrected_low", "corrected_high", "p_bh"),
        ("tendency", "tendency_low", "tendency_high", "p_value"),
    )  # fmt: skip
    issues = sorted(tendency["issue"].unique().to_list())
    figure, axes = _panels(len(issues), 5.5, max(3.0, 1.2 + 0.35 * tendency.height / max(len(issues), 1)))
    limit = _symmetric_limit(tendency.select(low, high).to_numpy().astype(float))
    smallest_column = "min_attainable_p" if "min_attainable_p" in tendency.columns else None
    for axis, issue in zip(axes, issues, strict=True):
        rows = tendency.filter(pl.col("issue") == issue).sort(["model", "prompt_type"])
        smallest = rows[smallest_column].to_list() if smallest_column else [None] * rows.height
        labels = [
            _marked(f"{m} · {p}", pv, s)
            for (m, p, pv), s in zip(
                rows.select("model", "prompt_type", p_column).iter_rows(), smallest, strict=True
            )
        ]
        colours = [
            GROUP_COLOURS["conservative"] if (v is not None and v < 0) else GROUP_COLOURS["liberal"]
            for v in rows[value]
        ]
        ok = rows["interval_ok"].to_list() if "interval_ok" in rows.columns else None
        _interval_bars(axis, labels, rows[value], rows[low], rows[high], colours, ok)
        axis.set_xlim(-limit, limit)
        axis.set_xlabel("← conservative    liberal tendency    liberal →", fontsize=8)
        axis.set_title(issue, fontsize=10)
    figure.suptitle(title, fontsize=11)
    _figure_legend(figure, axes)
    return figure


def plot_steerability(steerability: pl.DataFrame, title: str, path: str | Path) -> None:
    """Change in alignment with a group from the default prompt to the prompt steered towards
    it (size-corrected where the table has it), and — where the table has it — the
    differential steerability (steered towards the group − steered towards the other group),
    per model, with intervals; one row of panels per measure, one column per issue."""
    _save(steerability_figure(steerability, title), path)


def steerability_figure(steerability: pl.DataFrame, title: str):
    """The figure of :func:`plot_steerability`, unsaved."""
    value, low, high, p_column = _columns(
        steerability, ("steerability_corrected", "corrected_low", "corrected_high", "p_bh"),
        ("steerability", "steerability_low", "steerability_high", "steerability"),
    )  # fmt: skip
    smallest = "min_attainable_p" if "min_attainable_p" in steerability.columns else None
    measures = [
        (value, low, high, p_column if p_column != value else None, smallest, "steered − default alignment")
    ]
    if "differential" in steerability.columns:
        differential = ("differential", "differential_low", "differential_high", "differential_p_bh")
        measures.append(
            (*differential, "differential_min_attainable_p", "steered towards the group − the other")
        )
    issues = sorted(steerability["issue"].unique().to_list()) or ["(none)"]
    height = max(3.0, 1.2 + 0.35 * steerability.height / max(len(issues), 1))
    size = (5.5 * len(issues), height * len(measures))
    figure, axes = plt.subplots(
        len(measures), len(issues), figsize=size, squeeze=False, constrained_layout=True
    )
    for row_axes, (column, low_column, high_column, p_col, min_col, label) in zip(
        axes, measures, strict=True
    ):
        limit = _symmetric_limit(steerability.select(low_column, high_column).to_numpy().astype(float))
        for axis, issue in zip(row_axes, issues, strict=True):
            rows = steerability.filter(pl.col("issue") == issue).sort(["model", "group"])
            p_values = rows[p_col].to_list() if p_col else [None] * rows.height
            floors = rows[min_col].to_list() if min_col else [None] * rows.height
            names = [f"{m} → {g}" for m, g in rows.select("model", "group").iter_rows()]
            labels = [_marked(n, p, s) for n, p, s in zip(names, p_values, floors, strict=True)]
            colours = [GROUP_COLOURS.get(g, "grey") for g in rows["group"]]
            ok = rows["interval_ok"].to_list() if "interval_ok" in rows.columns else None
            _interval_bars(axis, labels, rows[column], rows[low_column], rows[high_column], colours, ok)
            axis.set_xlim(-limit, limit)
            axis.set_xlabel(label, fontsize=8)
            axis.set_title(issue, fontsize=10)
    figure.suptitle(title, fontsize=11)
    _figure_legend(figure, axes)
    return figure


def plot_label_distributions(
    distributions: pl.DataFrame, issue: str, topic: str, title: str, path: str | Path
) -> None:
    """Label shares of human groups and of each model's default-prompt posts on one topic."""
    subset = distributions.filter(
        (pl.col("issue") == issue)
        & (pl.col("topic") == topic)
        & ((pl.col("source") == "human") | (pl.col("prompt_type") == "default"))
    ).with_columns(
        pl.when(pl.col("source") == "human").then(pl.col("group")).otherwise(pl.col("source")).alias("series")
    )
    labels = list(dict.fromkeys(subset["label"].to_list()))
    series = sorted(subset["series"].unique().to_list(), key=lambda s: (s not in GROUP_COLOURS, s))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.7 * len(labels) * max(len(series), 1) / 2), 4.0),
                                constrained_layout=True)  # fmt: skip
    width = 0.8 / max(len(series), 1)
    for s, name in enumerate(series):
        shares = dict(zip(*subset.filter(pl.col("series") == name).select("label", "p"), strict=True))
        positions = np.arange(len(labels)) + s * width - 0.4 + width / 2
        heights = [shares.get(label) or 0.0 for label in labels]
        axis.bar(positions, heights, width, label=name, color=GROUP_COLOURS.get(name))
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axis.set_ylabel("share of label occurrences")
    axis.set_title(f"{title}: {issue}/{topic}", fontsize=10)
    axis.legend(fontsize=7)
    _save(figure, path)


HUMAN_BASELINE_ROW = "human: group vs overall"


def representativeness_matrix(table: pl.DataFrame, baselines: pl.DataFrame):
    """Row labels (model · context, then the human baseline), column labels (groups, ``overall``
    last) and the representativeness matrix (NaN where undefined)."""
    groups = sorted(table["group"].unique().to_list(), key=lambda g: (g == "overall", g))
    rows = sorted({f"{m} · {c}" for m, c in table.select("model", "context").iter_rows()})
    lookup = {
        (f"{m} · {c}", g): r
        for m, c, g, r in table.select("model", "context", "group", "representativeness").iter_rows()
    }
    human = {
        g: r
        for b, g, r in baselines.select("baseline", "group", "representativeness").iter_rows()
        if b == "group vs overall"
    }
    matrix = matrix_with_reference_row(rows, groups, lookup, human)
    return [*rows, HUMAN_BASELINE_ROW], groups, matrix


def plot_representativeness_heatmap(
    table: pl.DataFrame, baselines: pl.DataFrame, title: str, path: str | Path
) -> None:
    """Representativeness (1 − W1 / range, mean over questions) of each model · context for
    each survey group; the last row is each group against everyone. Colour scale [0, 1]."""
    row_labels, column_labels, matrix = representativeness_matrix(table, baselines)
    figure, axis = plt.subplots(
        figsize=(max(5.0, 2.5 + 1.1 * len(column_labels)), max(3.0, 1.5 + 0.36 * len(row_labels))),
        constrained_layout=True,
    )
    image = axis.imshow(np.ma.masked_invalid(matrix), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    axis.set_xticks(range(len(column_labels)), column_labels, rotation=30, ha="right", fontsize=8)
    axis.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    axis.axhline(len(row_labels) - 1.5, color="white", linewidth=2)
    for (r, c), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            colour = "black" if value > 0.6 else "white"
            axis.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    averages = baselines.filter(pl.col("baseline") != "group vs overall").select(
        "baseline", "representativeness"
    )
    notes = "; ".join(f"{b} {r:.2f}" for b, r in averages.iter_rows())
    axis.set_xlabel(f"survey group ({notes})" if notes else "survey group", fontsize=8)
    figure.colorbar(image, ax=axis, label="representativeness (1 − W1 / range)", shrink=0.8)
    figure.suptitle(title, fontsize=11)
    _save(figure, path)


def plot_opinion_steering(
    steerability: pl.DataFrame, differential: pl.DataFrame, title: str, path: str | Path
) -> None:
    """Two panels with question-resample intervals on one x range: best-of-3 steerability
    (steered − default representativeness) per model → group, and differential steerability
    (steered towards the group − towards the others) per model · method → group; * marks a
    sign-flip p-value below 0.05. A panel without rows says why."""
    figure, axes = _panels(2, 5.5, max(3.0, 1.2 + 0.3 * max(steerability.height, differential.height)))
    bounds = np.concatenate(
        [
            steerability.select("steerability_low", "steerability_high").to_numpy().astype(float).ravel(),
            differential.select("differential_low", "differential_high").to_numpy().astype(float).ravel(),
        ]
    )
    limit = _symmetric_limit(bounds)
    rows = steerability.sort(["model", "group"])
    panels = [
        (
            rows,
            [f"{m} → {g}" for m, g in rows.select("model", "group").iter_rows()],
            ("steerability", "steerability_low", "steerability_high"),
            "best-of-3 steered − default representativeness",
            "steered groups with a default context",
        ),
    ]
    rows = differential.sort(["model", "method", "group"])
    panels.append(
        (
            rows,
            [
                f"{m} · {k} → {g}{' *' if (p is not None and p == p and p < 0.05) else ''}"
                for m, k, g, p in rows.select("model", "method", "group", "p_value").iter_rows()
            ],
            ("differential_steerability", "differential_low", "differential_high"),
            "towards the group − towards the other groups",
            "two groups steered towards with one method",
        )
    )
    for axis, (table, labels, (value, low, high), xlabel, needs) in zip(axes, panels, strict=True):
        if table.height:
            colours = [GROUP_COLOURS.get(g, "grey") for g in table["group"]]
            _interval_bars(axis, labels, table[value], table[low], table[high], colours)
        else:
            axis.text(0.5, 0.5, f"no rows: needs {needs}", ha="center", va="center", fontsize=8,
                      transform=axis.transAxes)  # fmt: skip
            axis.set_yticks([])
        axis.set_xlim(-limit, limit)
        axis.set_xlabel(xlabel, fontsize=8)
    axes[0].set_title("steerability (paper)", fontsize=10)
    axes[1].set_title("differential steerability", fontsize=10)
    figure.suptitle(title, fontsize=11)
    _figure_legend(figure, axes)
    _save(figure, path)


def plot_design(
    summary: pl.DataFrame, gpu_hours: dict[int, float | None], configured_n: int, title: str, path: str | Path
) -> None:
    """Predicted precision against posts per shard, one panel per issue: model-level 95 %
    half-width near identity per group (solid), minimum detectable tendency and steerability
    at 80 % power with the configured topics (dashed) and twice as many (dotted), the
    configured size marked, GPU-hours of the whole study on a second axis (grey)."""
    issues = sorted(summary["issue"].unique().to_list()) or ["(none)"]
    figure, axes = _panels(len(issues), 6.0, 5.4)
    sizes = sorted(summary["n_model"].unique().to_list())
    for axis, issue in zip(axes, issues, strict=True):
        rows = summary.filter(pl.col("issue") == issue)
        configured = rows.filter(pl.col("configured_topics"))
        more = rows.filter(~pl.col("configured_topics"))
        for group in sorted(rows["group"].unique().to_list()):
            colour = GROUP_COLOURS.get(group, "grey")
            mine = configured.filter(pl.col("group") == group).sort("n_model")
            axis.plot(mine["n_model"], mine["model_level_halfwidth"], "o-", color=colour,
                      label=f"model-level half-width, {group}")  # fmt: skip
            axis.plot(mine["n_model"], mine["mde_steerability"], "s--", color=colour,
                      label=f"detectable steerability, {group} (dotted: twice the topics)")  # fmt: skip
            extra = more.filter(pl.col("group") == group).sort("n_model")
            axis.plot(extra["n_model"], extra["mde_steerability"], "s:", color=colour, alpha=0.6)
        tendency = configured.filter(pl.col("group") == configured["group"].min()).sort("n_model")
        topics = int(tendency["n_topics"].max()) if tendency.height else 0
        axis.plot(tendency["n_model"], tendency["mde_tendency"], "^--", color="black",
                  label=f"detectable tendency ({topics} topics; dotted: {2 * topics})")  # fmt: skip
        extra = more.filter(pl.col("group") == more["group"].min()).sort("n_model") if more.height else more
        if extra.height:
            axis.plot(extra["n_model"], extra["mde_tendency"], "^:", color="black", alpha=0.6)
        axis.axvline(configured_n, color="grey", linestyle="-.", linewidth=1, label="configured n_per_shard")
        axis.set_xscale("log", base=2)
        axis.set_xticks(sizes, [str(s) for s in sizes])
        axis.set_xlabel("posts per shard (model cell size)", fontsize=8)
        axis.set_ylabel("alignment units", fontsize=8)
        axis.set_title(issue, fontsize=10)
        # Below the panel: the curves and the cost line fill the plotting area.
        axis.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
        known = [(n, h) for n, h in sorted(gpu_hours.items()) if h is not None]
        if known:
            cost = axis.twinx()
            cost.plot([n for n, _ in known], [h for _, h in known], "x-", color="grey", linewidth=0.8)
            cost.set_ylabel("GPU-hours of the study (grey, x)", fontsize=8, color="grey")
            cost.set_ylim(bottom=0)
    figure.suptitle(title, fontsize=11)
    _save(figure, path)
