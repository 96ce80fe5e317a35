"""Quantities against the batch size: one line per series with error bars (mean ± spread), a
logarithmic batch-size axis labelled at the batch sizes only, series dodged sideways so that their
error bars stay apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from .figure import DPI, save_figure, style

DODGE = 0.035  # sideways shift between series, in log2 units of the batch size


@dataclass(frozen=True)
class Series:
    """One line: its values (NaN where missing) and error bars (NaN for none) at the batch sizes
    `x`.
    """

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
    """Draw the panel's series against the batch size on a log2 axis with ticks at the batch sizes
    only.
    """
    shown = [s for s in panel.series if np.isfinite(s.mean).any()]
    sizes = sorted({x for s in shown for x in s.x})
    for i, s in enumerate(shown):
        shift = 2.0 ** (DODGE * (i - (len(shown) - 1) / 2))
        err = np.asarray(s.err, dtype=float)
        ax.errorbar(
            np.asarray(s.x, dtype=float) * shift,
            s.mean,
            yerr=None if np.isnan(err).all() else err,
            color=s.color,
            marker=s.marker,
            ls=s.linestyle,
            ms=5.5,
            capsize=3,
            lw=1.5,
            label=s.label,
        )
    ax.set_xscale("log", base=2)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(sizes, [str(b) for b in sizes])
    if sizes:
        ax.set_xlim(sizes[0] / 2**0.4, sizes[-1] * 2**0.4)
    low, high = ax.get_ylim()
    if low >= 0:  # values at zero (a barrier of 0) must stay visible above the axis
        ax.set_ylim(-0.04 * (high - low), high)
    ax.set(xlabel="batch size", ylabel=panel.ylabel, title=panel.title)


def legend_handles(
    panels: Sequence[Panel], styles: Mapping[tuple[str, str], str] | None = None
) -> tuple[list[Line2D], list[str]]:
    """One legend for all panels that matches their marks: a series' colour once per label and, when
    the series use several (marker, line style) pairs, one black entry per pair named by `styles`;
    with one pair, the colour entries carry it.
    """
    seen: dict[str, Series] = {}
    for s in (s for p in panels for s in p.series if np.isfinite(s.mean).any()):
        seen.setdefault(s.label, s)
    pairs = list(dict.fromkeys((s.marker, s.linestyle) for p in panels for s in p.series))
    several = len(pairs) > 1 and styles is not None
    handles = [
        Line2D(
            [],
            [],
            color=s.color,
            lw=2.5,
            marker=None if several else s.marker,
            ls="-" if several else s.linestyle,
        )
        for s in seen.values()
    ]
    labels = list(seen)
    if several:
        handles += [Line2D([], [], color="0.2", marker=m, ls=ls, lw=1.5) for m, ls in pairs]
        labels += [styles.get((m, ls), f"{m} {ls}") for m, ls in pairs]
    return handles, labels


def plot_trends(
    panels: Sequence[Panel],
    out_path: str | Path,
    title: str,
    columns: int = 2,
    formats: Sequence[str] = ("png",),
    dpi: int = DPI,
    styles: Mapping[tuple[str, str], str] | None = None,
    share_rows: bool = False,
) -> list[Path]:
    """Panels of series against the batch size, one legend for all of them below (`legend_handles`);
    with `share_rows` the panels of a row share their y-axis (one quantity per row, compared across
    columns).
    """
    rows, cols = -(-len(panels) // columns), min(columns, len(panels))
    with style():
        fig = Figure(figsize=(4.4 * cols, 3.4 * rows + 0.7), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, panel in zip(axes, panels):
            draw_trend(ax, panel)
        for row in range(rows) if share_rows else ():
            drawn = axes[row * cols : min((row + 1) * cols, len(panels))]
            limits = [ax.get_ylim() for ax in drawn]
            for ax in drawn:
                ax.set_ylim(min(lo for lo, _ in limits), max(hi for _, hi in limits))
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        handles, labels = legend_handles(panels, styles)
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=4)
        fig.suptitle(title)
        return save_figure(fig, out_path, formats, dpi)
