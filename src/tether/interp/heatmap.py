"""A layers x positions heatmap as an inline SVG string, in the style of :mod:`tether.report.plots` (matplotlib's
SVG backend, no pyplot, deterministic output)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from tether.report.plots import _RC, _svg

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
) -> str:
    """``values[row][column]`` as coloured cells, row 0 at the bottom (the model's first layer); None or NaN
    cells are left blank. ``annotations`` (same shape) are written into the cells when they are few enough."""
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
        if annotations is not None and rows * cols <= ANNOTATE_UP_TO:
            for r in range(rows):
                for c in range(cols):
                    value = grid[r, c]
                    red, green, blue, _ = image.cmap(image.norm(value)) if math.isfinite(value) else (1, 1, 1, 1)
                    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # white text on dark cells
                    color = "white" if dark else "black"
                    ax.text(c, r, annotations[r][c], ha="center", va="center", fontsize=5.5, color=color)
        return _svg(fig)
