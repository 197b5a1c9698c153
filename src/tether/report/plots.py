"""Charts as inline SVG strings, drawn with matplotlib's SVG backend (no pyplot, no global figures).

The output is deterministic: element ids come from a fixed hash salt, the metadata carries no date, and
text is written as text (``svg.fonttype = none``), so the same data gives byte-identical SVG. Ids are
content hashes, so several charts can share one HTML page without clashing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

_RC: dict[Any, Any] = {
    "svg.hashsalt": "tether",
    "svg.fonttype": "none",
    "text.parse_math": False,  # labels are data: "$" must not start math mode
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 9,
}
_SIZE = (7.0, 3.2)  # inches
_MARKERS_UP_TO = 30  # draw point markers on series this short, so one point still shows


def line_chart(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str) -> str:
    """One line per named series of (x, y) points; a legend when there is more than one series."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=_SIZE, layout="constrained")
        ax = fig.add_subplot()
        for name, points in series.items():
            xs = [x for x, _ in points]
            ys = [y for _, y in points]
            ax.plot(xs, ys, label=name, marker="o" if len(points) <= _MARKERS_UP_TO else None, markersize=3)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        if len(series) > 1:
            ax.legend(fontsize="small")
        return _svg(fig)


def grouped_bars(
    groups: list[str], series: dict[str, list[float]], title: str, ylabel: str, *, percent: bool = False
) -> str:
    """Bars for each group, one per series side by side (e.g. before/after); NaN values are drawn as "n/a".

    With ``percent``, values are fractions in [0, 1], drawn and labelled as percentages.
    """
    scale = 100.0 if percent else 1.0
    width = 0.8 / max(len(series), 1)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=_SIZE, layout="constrained")
        ax = fig.add_subplot()
        for i, (name, values) in enumerate(series.items()):
            heights = [0.0 if math.isnan(v) else v * scale for v in values]
            xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
            bars = ax.bar(xs, heights, width, label=name)
            labels = ["n/a" if math.isnan(v) else f"{v * scale:.0f}%" if percent else f"{v:.3g}" for v in values]
            ax.bar_label(bars, labels=labels, fontsize="x-small", padding=1)
        ax.set_xticks(range(len(groups)), groups)
        ax.set(title=title, ylabel=ylabel)
        if percent:
            ax.set_ylim(0, 110)
        ax.grid(axis="x", visible=False)
        fig.legend(loc="outside right upper", fontsize="small")  # beside the axes: never over a 100% bar
        return _svg(fig)


def scatter_with_intervals(
    points: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]],
    title: str,
    xlabel: str,
    ylabel: str,
) -> str:
    """One labelled point per name at (x, y), each given as (value, low, high) fractions in [0, 1],
    with its confidence intervals as error bars; axes in percent from 0 to 100."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(5.0, 4.0), layout="constrained")
        ax = fig.add_subplot()
        for name, ((x, x_low, x_high), (y, y_low, y_high)) in points.items():
            if math.isnan(x) or math.isnan(y):
                continue
            ax.errorbar(
                [100 * x],
                [100 * y],
                xerr=[[100 * (x - x_low)], [100 * (x_high - x)]],
                yerr=[[100 * (y - y_low)], [100 * (y_high - y)]],
                fmt="o",
                capsize=3,
                label=name,
            )
            ax.annotate(name, (100 * x, 100 * y), textcoords="offset points", xytext=(5, 5), fontsize="small")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(-2, 102), ylim=(-2, 102))
        return _svg(fig)


def histogram(series: dict[str, list[float]], title: str, xlabel: str, *, bins: int = 30) -> str:
    """Overlaid histograms on shared bins (e.g. rewards of chosen and rejected responses)."""
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    edges = [low + (high - low) * i / bins for i in range(bins + 1)] if high > low else bins
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=_SIZE, layout="constrained")
        ax = fig.add_subplot()
        for name, vs in series.items():
            ax.hist([v for v in vs if math.isfinite(v)], bins=edges, alpha=0.55, label=name)
        ax.set(title=title, xlabel=xlabel, ylabel="count")
        if len(series) > 1:
            ax.legend(fontsize="small")
        return _svg(fig)


def scatter(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str) -> str:
    """Small points, one colour per named series (e.g. reward against response length)."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=_SIZE, layout="constrained")
        ax = fig.add_subplot()
        for name, points in series.items():
            ax.scatter([x for x, _ in points], [y for _, y in points], s=6, alpha=0.5, label=name)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        if len(series) > 1:
            ax.legend(fontsize="small")
        return _svg(fig)


def _svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element, without the XML prolog (it is embedded in HTML)."""
    FigureCanvasSVG(fig)  # explicit backend: no pyplot, no display
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def roc_curves(curves: dict[str, tuple[list[float], list[float]]], title: str, *, marks: Sequence[float] = ()) -> str:
    """ROC curves (true-positive rate against false-positive rate, log x so 1% is readable); dashed lines at
    the false-positive rates in ``marks``."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=_SIZE, layout="constrained")
        ax = fig.add_subplot()
        floor = 1e-3
        for name, (fpr, tpr) in curves.items():
            ax.step([max(f, floor) for f in fpr], tpr, where="post", label=name)
        for mark in marks:
            ax.axvline(mark, linestyle="--", linewidth=0.8, color="grey")
        ax.set_xscale("log")
        ax.set(
            title=title,
            xlabel="false-positive rate (log)",
            ylabel="recall (true-positive rate)",
            xlim=(floor, 1),
            ylim=(0, 1.02),
        )
        if curves:
            ax.legend(fontsize="small", loc="lower right")
        return _svg(fig)


ANNOTATE_UP_TO = 900
"""Cells written into the heatmap (token or value) only when there are at most this many."""


def heatmap(
    values: Sequence[Sequence[float | None]],
    *,
    xlabels: Sequence[str],
    ylabels: Sequence[str],
    title: str,
    xlabel: str = "position",
    ylabel: str = "layer",
    colorbar: str = "",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    annotations: Sequence[Sequence[str]] | None = None,
    mark: tuple[int, int] | None = None,
) -> str:
    """``values[row][column]`` as coloured cells, row 0 at the bottom (e.g. the model's first layer); None or NaN
    cells are left blank. ``annotations`` (same shape) are written into the cells when they are few enough;
    ``mark`` = (row, column) circles one cell."""
    grid = np.array([[math.nan if v is None else float(v) for v in row] for row in values], dtype=float)
    rows, cols = grid.shape if grid.size else (len(ylabels), len(xlabels))
    width = min(max(6.0, 0.42 * cols + 2.5), 22.0)
    height = min(max(2.6, 0.26 * rows + 1.6), 14.0)
    with matplotlib.rc_context({**_RC, "axes.grid": False}):
        fig = Figure(figsize=(width, height), layout="constrained")
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(grid), origin="lower", aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_xticks(range(cols), list(xlabels), rotation=60, ha="right", fontsize="x-small")
        ax.set_yticks(range(rows), list(ylabels), fontsize="x-small")
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        fig.colorbar(image, ax=ax, label=colorbar, shrink=0.9)
        if mark is not None:
            ax.scatter([mark[1]], [mark[0]], s=80, facecolors="none", edgecolors="red", linewidths=1.5)
        if annotations is not None and rows * cols <= ANNOTATE_UP_TO:
            for r in range(rows):
                for c in range(cols):
                    value = grid[r, c]
                    red, green, blue, _ = image.cmap(image.norm(value)) if math.isfinite(value) else (1, 1, 1, 1)
                    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # white text on dark cells
                    color = "white" if dark else "black"
                    ax.text(c, r, annotations[r][c], ha="center", va="center", fontsize=5.5, color=color)
        return _svg(fig)


def band_chart(series: dict[str, list[tuple[float, float, float, float]]], title: str, xlabel: str, ylabel: str) -> str:
    """Lines of (x, y) with a shaded (low, high) band each (e.g. a 95% interval)."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=_SIZE, layout="constrained")
        ax = fig.add_subplot()
        for name, points in series.items():
            xs = [p[0] for p in points]
            ax.plot(xs, [p[1] for p in points], label=name, marker="o", markersize=3)
            ax.fill_between(xs, [p[2] for p in points], [p[3] for p in points], alpha=0.2)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        if len(series) > 1:
            ax.legend(fontsize="small")
        return _svg(fig)
