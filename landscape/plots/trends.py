"""Quantities against the batch size: one line per series with error bars (mean ± spread), a logarithmic
batch-size axis labelled at the batch sizes only, series dodged sideways so that their error bars stay apart."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from .figure import DPI, save_figure, style
from .path import legend_below

DODGE = 0.035   # sideways shift between series, in log2 units of the batch size


@dataclass(frozen=True)
class Series:
    """One line: its values (NaN where missing) and error bars (NaN for none) at the batch sizes `x`."""

    label: str
    x: tuple[int, ...]
    mean: tuple[float, ...]
    err: tuple[float, ...]
    color: tuple[float, float, float] | str
    marker: str = "o"
    linestyle: str = "-"


@dataclass(frozen=True)
class Panel:
    """One axes: a title, the y label and its series."""

    title: str
    ylabel: str
    series: tuple[Series, ...]


def draw_trend(ax: Axes, panel: Panel) -> None:
    """Draw the panel's series against the batch size on a log2 axis with ticks at the batch sizes only."""
    shown = [s for s in panel.series if np.isfinite(s.mean).any()]
    sizes = sorted({x for s in shown for x in s.x})
    for i, s in enumerate(shown):
        shift = 2.0 ** (DODGE * (i - (len(shown) - 1) / 2))
        err = np.asarray(s.err, dtype=float)
        ax.errorbar(np.asarray(s.x, dtype=float) * shift, s.mean, yerr=None if np.isnan(err).all() else err,
                    color=s.color, marker=s.marker, ls=s.linestyle, ms=5.5, capsize=3, lw=1.5, label=s.label)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(sizes, [str(b) for b in sizes])
    if sizes:
        ax.set_xlim(sizes[0] / 2 ** 0.4, sizes[-1] * 2 ** 0.4)
    low, high = ax.get_ylim()
    if low >= 0:   # values at zero (a barrier of 0) must stay visible above the axis
        ax.set_ylim(-0.04 * (high - low), high)
    ax.set(xlabel="batch size", ylabel=panel.ylabel, title=panel.title)


def plot_trends(panels: Sequence[Panel], out_path: str | Path, title: str, columns: int = 2,
                formats: Sequence[str] = ("png",), dpi: int = DPI) -> list[Path]:
    """Panels of series against the batch size, one legend (of the first panel with most series) below."""
    rows, cols = -(-len(panels) // columns), min(columns, len(panels))
    with style():
        fig = Figure(figsize=(4.4 * cols, 3.4 * rows + 0.7), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, panel in zip(axes, panels):
            draw_trend(ax, panel)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        fullest = max(range(len(panels)), key=lambda i: len(axes[i].get_legend_handles_labels()[0]))
        legend_below(fig, axes[fullest], columns=4)
        fig.suptitle(title)
        return save_figure(fig, out_path, formats, dpi)
