"""Quantities against a linear x (a proportion, a fraction pruned), with bands of their spread.

One line per series with a shaded band of ± its spread, and horizontal reference lines (a parent
model's accuracy); panels side by side, one legend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .figure import DPI, palette, save_figure, style
from .path import legend_below


@dataclass(frozen=True)
class Band:
    """One line: values at `x` and their spread (NaN: none); a horizontal line when `x` is empty.

    Attributes:
        label: The legend label (lines of one label share a colour).
        x: The positions; empty for a horizontal line at `mean[0]`.
        mean: The values at `x`.
        spread: The half-width of the band at each `x` (NaN for no band).
        linestyle: A matplotlib line style.

    Examples:
        >>> band = Band("fused", x=(0.0, 0.5), mean=(0.9, 0.8), spread=(0.01, 0.02))
        >>> band.linestyle, len(band.x) == len(band.mean) == len(band.spread)
        ('-', True)
    """

    label: str
    x: tuple[float, ...]
    mean: tuple[float, ...]
    spread: tuple[float, ...]
    linestyle: str = "-"


@dataclass(frozen=True)
class BandPanel:
    """One axes: title, axis labels and its lines (colours by label, the same in every panel).

    Attributes:
        title: The panel's title.
        xlabel: The x axis label.
        ylabel: The y axis label.
        lines: The lines drawn.

    Examples:
        >>> panel = BandPanel("test", "proportion", "accuracy", (Band("A", (), (0.9,), (0.0,)),))
        >>> [line.label for line in panel.lines]
        ['A']
    """

    title: str
    xlabel: str
    ylabel: str
    lines: tuple[Band, ...]


def plot_bands(
    panels: Sequence[BandPanel],
    out_path: str | Path,
    title: str,
    formats: Sequence[str] = ("png",),
    dpi: int = DPI,
) -> list[Path]:
    """Draw `panels` in one row and save them as `out_path` in `formats`.

    Args:
        panels: The panels, left to right.
        out_path: The figure's path (`save_figure`).
        title: The figure's title.
        formats: The formats to write.
        dpi: The resolution of raster formats.

    Returns:
        The files written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> fused = Band("fused", (0.0, 0.5, 1.0), (0.9, 0.8, 0.9), (0.01, 0.02, 0.01))
        >>> parent = Band("parent A", (), (0.95,), (float("nan"),), linestyle="--")
        >>> panel = BandPanel("test", "proportion of B", "accuracy", (fused, parent))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = plot_bands([panel], Path(tmp) / "bands", "fusion", formats=("svg",))
        ...     print([f.name for f in files], files[0].stat().st_size > 0)
        ['bands.svg'] True
    """
    labels = list(dict.fromkeys(line.label for p in panels for line in p.lines))
    with style():
        colours = dict(zip(labels, palette() * (1 + len(labels) // len(palette()))))
        fig = Figure(figsize=(4.6 * len(panels), 3.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(panels), squeeze=False)).ravel()
        for ax, panel in zip(axes, panels):
            for line in panel.lines:
                if not line.x:
                    ax.axhline(
                        line.mean[0],
                        color=colours[line.label],
                        ls=line.linestyle,
                        lw=1.2,
                        label=line.label,
                    )
                    continue
                x, mean, spread = (
                    np.asarray(v, dtype=float) for v in (line.x, line.mean, line.spread)
                )
                ax.plot(
                    x,
                    mean,
                    color=colours[line.label],
                    ls=line.linestyle,
                    marker="o",
                    ms=4,
                    lw=1.5,
                    label=line.label,
                )
                if np.isfinite(spread).any():
                    ax.fill_between(
                        x, mean - spread, mean + spread, color=colours[line.label], alpha=0.2, lw=0
                    )
            ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
        fullest = max(range(len(panels)), key=lambda i: len(axes[i].get_legend_handles_labels()[0]))
        legend_below(fig, axes[fullest], columns=4)
        fig.suptitle(title)
        return save_figure(fig, out_path, formats, dpi)
