"""The Hessian (or Gauss-Newton, empirical Fisher) eigenvalue spectral density figure.

Log-scale density against eigenvalue, as in the seed study's figures 3-5 and PyHessian's plots:
every density of a comparison overlaid on one axis, each recomputed from its stored SLQ nodes and
weights (`/models/<name>/esd` or `/models/<name>/<curvature>/esd`) with one kernel width chosen from
the runs (`kernel_sigma2`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..choices import CURVATURE_LABELS
from ..curvature.density import smooth
from .figure import DPI, palette, save_figure, style
from .path import legend_below

# added to the density before the log scale, as PyHessian's plots do, so empty regions show
FLOOR = 1e-7
KERNEL_GAPS = 2.0  # kernel standard deviation in median gaps between neighbouring Ritz values
MIN_WIDTH = 1e-3  # ... and at least this fraction of the nodes' range

# (legend label, stored arrays, stored attributes)
Curve = tuple[str, dict[str, np.ndarray], dict[str, Any]]


def kernel_sigma2(node_sets: Sequence[np.ndarray]) -> float:
    """The Gaussian kernel variance for densities compared on one axis, chosen from their SLQ runs.

    Rule: pool the Ritz values of every run of every density, sort the distinct ones and take the
    median gap g between neighbours; the kernel's standard deviation is sigma = max(KERNEL_GAPS * g,
    MIN_WIDTH * r), r the range of the pooled values (sigma = MIN_WIDTH * max(1, |value|) when they
    are all equal). A kernel twice the typical node spacing merges the nodes of separate runs into
    one curve instead of a comb of spikes (the fixed 1e-5 * range of Ghorbani, Krishnan & Xiao, "An
    Investigation into Neural Net Optimization via Hessian Eigenvalue Density", ICML 2019, resolves
    single nodes), and one width for all curves keeps them comparable.

    Args:
        node_sets: The `nodes` arrays (runs, steps) of the densities.

    Returns:
        sigma^2.

    Examples:
        >>> # distinct nodes 0, 1, 2, 4: median gap 1, so sigma = 2 x 1 (more than 1e-3 x 4)
        >>> kernel_sigma2([np.array([[0.0, 1.0, 2.0]]), np.array([[4.0, 2.0]])])
        4.0
        >>> round(kernel_sigma2([np.array([[3.0, 3.0]])]), 12)  # all equal: (1e-3 x 3)^2
        9e-06
    """
    pooled = np.unique(np.concatenate([np.ravel(n) for n in node_sets]))
    if pooled.size < 2:
        return (MIN_WIDTH * max(1.0, float(abs(pooled[0])))) ** 2
    gap = float(np.median(np.diff(pooled)))
    return max(KERNEL_GAPS * gap, MIN_WIDTH * float(pooled[-1] - pooled[0])) ** 2


def overlay_curves(
    curves: Sequence[Curve],
) -> tuple[list[tuple[np.ndarray, np.ndarray]], float | None]:
    """The (grid, density) of each curve, drawn with one shared kernel.

    A curve with stored `nodes` and `weights` is recomputed with the `kernel_sigma2` of all such
    curves; one without them keeps its stored `grid` and `density`.

    Args:
        curves: (label, arrays, attrs) per density.

    Returns:
        The (grid, density) pairs in the order of `curves`, and the kernel variance (None when no
        curve has nodes).

    Examples:
        >>> nodes = {"nodes": np.array([[0.0, 1.0, 2.0, 4.0]]), "weights": np.full((1, 4), 0.25)}
        >>> stored = {"grid": np.array([0.0, 1.0]), "density": np.array([0.5, 0.5])}
        >>> drawn, sigma2 = overlay_curves([("A", nodes, {}), ("B", stored, {})])
        >>> sigma2, drawn[0][0].shape == drawn[0][1].shape, drawn[1][1].tolist()
        (4.0, True, [0.5, 0.5])
    """
    with_nodes = [arrays["nodes"] for _, arrays, _ in curves if "nodes" in arrays]
    sigma2 = kernel_sigma2(with_nodes) if with_nodes else None
    drawn = []
    for _, arrays, _ in curves:
        if "nodes" in arrays:
            grid, density, _ = smooth(
                np.atleast_2d(arrays["nodes"]), np.atleast_2d(arrays["weights"]), sigma2
            )
        else:
            grid, density = np.asarray(arrays["grid"]), np.asarray(arrays["density"])
        drawn.append((grid, density))
    return drawn, sigma2


def plot_esd_overlay(
    curves: Sequence[Curve],
    out_path: Path,
    title: str,
    formats: Sequence[str] = ("png",),
    dpi: int = DPI,
    styles: Sequence[str] | None = None,
) -> list[Path]:
    """Every density of `curves` as a line on one log-scale axis over the span of them all.

    One legend goes under the axis, the zero eigenvalue is dashed and the kernel width noted.

    Args:
        curves: (label, arrays, attrs) per density; the arrays hold `nodes` and `weights` (or
            `grid` and `density`), the first curve's `curvature` attribute names the axis.
        out_path: The figure's path without suffix.
        title: The figure's title.
        formats: The formats to write.
        dpi: The resolution of raster formats.
        styles: A matplotlib line style per curve (solid by default).

    Returns:
        The files written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> a = {"nodes": np.array([[0.0, 1.0, 4.0]]), "weights": np.array([[0.5, 0.3, 0.2]])}
        >>> b = {"nodes": np.array([[0.0, 2.0, 6.0]]), "weights": np.array([[0.6, 0.3, 0.1]])}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = plot_esd_overlay([("A", a, {}), ("B", b, {})], Path(tmp) / "esd", "ESD",
        ...                              formats=("svg",), styles=["-", "--"])
        ...     print([f.name for f in files])
        ['esd.svg']
    """
    drawn, sigma2 = overlay_curves(curves)
    colours = palette()
    with style():
        fig = Figure(figsize=(6.2, 4.0), layout="constrained")
        ax = fig.subplots()
        lo, hi = min(g[0] for g, _ in drawn), max(g[-1] for g, _ in drawn)
        for i, ((label, _, _), (grid, density)) in enumerate(zip(curves, drawn)):
            # each grid ends 5 kernel widths past its nodes: the density is 0 from there to the
            # shared limits
            ax.semilogy(
                np.r_[lo, grid[0], grid, grid[-1], hi],
                np.r_[0.0, 0.0, density, 0.0, 0.0] + FLOOR,
                color=colours[i % len(colours)],
                ls=styles[i] if styles else "-",
                lw=1.2,
                label=label,
            )
        ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
        margin = 0.02 * (hi - lo)
        ax.set_xlim(lo - margin, hi + margin)
        ax.set_ylim(FLOOR / 2, None)
        curvature = str(curves[0][2].get("curvature", "hessian"))
        ax.set_xlabel(f"{CURVATURE_LABELS.get(curvature, 'Hessian')} eigenvalue")
        ax.set_ylabel("density (log scale)")
        ax.set_title(title)
        if sigma2 is not None:
            ax.text(
                0.98,
                0.97,
                f"Gaussian kernel sigma {math.sqrt(sigma2):.2g}\n"
                f"({KERNEL_GAPS:g} x median Ritz value gap)",
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=7,
                color="0.25",
                bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.8", "alpha": 0.9},
            )
        legend_below(fig, ax, columns=2)
        return save_figure(fig, out_path, formats, dpi)


def plot_esd(
    arrays: dict[str, np.ndarray],
    attrs: dict[str, Any],
    out_path: Path,
    title: str,
    formats: Sequence[str] = ("png",),
    dpi: int = DPI,
) -> list[Path]:
    """One ESD alone: `plot_esd_overlay` with one curve, labelled `title`.

    Args:
        arrays: The stored arrays: `nodes` and `weights` (or `grid` and `density`).
        attrs: The stored attributes (`curvature` names the axis).
        out_path: The figure's path without suffix.
        title: The figure's title and the curve's label.
        formats: The formats to write.
        dpi: The resolution of raster formats.

    Returns:
        The files written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> a = {"nodes": np.array([[0.0, 1.0, 4.0]]), "weights": np.array([[0.5, 0.3, 0.2]])}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = plot_esd(a, {"curvature": "ggn"}, Path(tmp) / "esd", "A", formats=("svg",))
        ...     print([f.name for f in files])
        ['esd.svg']
    """
    return plot_esd_overlay([(title, arrays, attrs)], out_path, title, formats, dpi)
