"""Quantities against the batch size: one line per series with error bars (mean ± spread).

A logarithmic batch-size axis labelled at the batch sizes only, series dodged sideways so that their
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
    """One line: its values and error bars at the batch sizes `x`.

    Attributes:
        label: The legend label.
        x: The batch sizes.
        mean: The values (NaN where missing; a series without any is not drawn).
        err: The error bars' half-widths (all NaN for none).
        color: A matplotlib colour.
        marker: A matplotlib marker.
        linestyle: A matplotlib line style.

    Examples:
        >>> s = Series("fused", (32, 128), (0.5, float("nan")), (0.1, 0.1), "C0")
        >>> s.marker, s.linestyle
        ('o', '-')
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
    """One axes: a title, the y label and its series.

    Attributes:
        title: The panel's title.
        ylabel: The y axis label.
        series: The lines drawn, dodged sideways in this order.

    Examples:
        >>> panel = Panel("barrier", "loss", (Series("A", (32,), (0.5,), (0.1,), "C0"),))
        >>> [s.label for s in panel.series]
        ['A']
    """

    title: str
    ylabel: str
    series: tuple[Series, ...]


def _draw_trend(ax: Axes, panel: Panel) -> None:
    """Draw the panel's series against the batch size on a log2 axis, ticks at the batch sizes."""
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
    """One legend for all panels that matches their marks.

    A series' colour appears once per label (series with no value are left out) and, when the
    series use several (marker, line style) pairs and `styles` is given, one grey entry per pair
    named by `styles`; otherwise the colour entries carry the marker and line style.

    Args:
        panels: The panels.
        styles: The name of each (marker, line style) pair.

    Returns:
        The legend's handles and labels.

    Examples:
        >>> from landscape.plots.trends import Panel, Series
        >>> fused = Series("fused", (32, 128), (0.5, 0.3), (0.05, 0.04), "C0")
        >>> vanilla = Series("vanilla", (32, 128), (2.0, 1.5), (0.1, 0.1), "C1", marker="s")
        >>> panel = Panel("barrier", "loss barrier", (fused, vanilla))
        >>> _, labels = legend_handles([panel], {("o", "-"): "OT", ("s", "-"): "vanilla avg"})
        >>> labels
        ['fused', 'vanilla', 'OT', 'vanilla avg']
        >>> legend_handles([panel])[1]
        ['fused', 'vanilla']
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
    """Panels of series against the batch size, one legend for all of them below.

    Args:
        panels: The panels, row by row.
        out_path: The figure's path (`save_figure`).
        title: The figure's title.
        columns: Panels per row.
        formats: The formats to write.
        dpi: The resolution of raster formats.
        styles: The legend's names of the (marker, line style) pairs (`legend_handles`).
        share_rows: The panels of a row share their y-axis limits (one quantity per row, compared
            across columns).

    Returns:
        The files written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> fused = Series("fused", (32, 128), (0.5, 0.3), (0.05, 0.04), "C0")
        >>> vanilla = Series("vanilla", (32, 128), (2.0, 1.5), (0.1, 0.1), "C1", marker="s")
        >>> panel = Panel("barrier", "loss barrier", (fused, vanilla))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = plot_trends([panel, panel], Path(tmp) / "t", "trends", formats=("svg",),
        ...                         share_rows=True)
        ...     print([f.name for f in files])
        ['t.svg']
    """
    rows, cols = -(-len(panels) // columns), min(columns, len(panels))
    with style():
        fig = Figure(figsize=(4.4 * cols, 3.4 * rows + 0.7), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, panel in zip(axes, panels):
            _draw_trend(ax, panel)
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
