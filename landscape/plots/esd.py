"""The Hessian (or Gauss-Newton, empirical Fisher) eigenvalue spectral density figure (log-scale density against
eigenvalue, as in the seed study's figures 3-5 and PyHessian's plots), drawn from a stored `/models/<name>/esd`
(or `/models/<name>/<curvature>/esd`) group alone."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..choices import CURVATURE_LABELS
from .figure import DPI, palette, save_figure, style

FLOOR = 1e-7  # added to the density before the log scale, as PyHessian's plots do, so empty regions show


def draw_esd(ax: Axes, arrays: dict[str, np.ndarray], attrs: dict[str, Any], title: str) -> None:
    """Draw the smoothed ESD (`grid`, `density`) on a log scale with the zero eigenvalue marked into `ax`."""
    grid, density = np.asarray(arrays["grid"]), np.asarray(arrays["density"])
    ax.semilogy(grid, density + FLOOR, color=palette()[0], lw=1.2)
    ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
    margin = 0.02 * (grid[-1] - grid[0])
    ax.set_xlim(grid[0] - margin, grid[-1] + margin)
    ax.set_ylim(FLOOR / 2, None)
    ax.set_xlabel(f"{CURVATURE_LABELS.get(str(attrs.get('curvature', 'hessian')), 'Hessian')} eigenvalue")
    ax.set_ylabel("density (log scale)")
    ax.set_title(title)
    if "nodes" in arrays:
        nodes = np.asarray(arrays["nodes"])
        runs, steps = nodes.shape if nodes.ndim == 2 else (1, nodes.size)
        ax.text(0.98, 0.97, f"SLQ: {runs} run(s) x {steps} steps\n"
                f"Ritz values in [{nodes.min():.3g}, {nodes.max():.3g}]\n"
                f"kernel variance {float(attrs.get('sigma2', float('nan'))):.2g}",
                transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.25",
                bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.8", "alpha": 0.9})


def plot_esd(arrays: dict[str, np.ndarray], attrs: dict[str, Any], out_path: Path, title: str,
             formats: Sequence[str] = ("png",), dpi: int = DPI) -> list[Path]:
    """One ESD in its own figure, written to `out_path` in `formats`."""
    with style():
        fig = Figure(figsize=(5.5, 3.8), layout="constrained")
        draw_esd(fig.subplots(), arrays, attrs, title)
        return save_figure(fig, out_path, formats, dpi)


def plot_esd_grid(panels: Sequence[tuple[str, dict[str, np.ndarray], dict[str, Any]]], out_path: Path,
                  title: str, columns: int = 3, formats: Sequence[str] = ("png",), dpi: int = DPI) -> list[Path]:
    """Several ESDs `(title, arrays, attrs)` side by side, each on its own axis scale (seed study figures 3-5)."""
    rows, cols = -(-len(panels) // columns), min(columns, len(panels))
    with style():
        fig = Figure(figsize=(4.2 * cols, 3.3 * rows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, (name, arrays, attrs) in zip(axes, panels):
            draw_esd(ax, arrays, attrs, name)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        fig.suptitle(title)
        return save_figure(fig, out_path, formats, dpi)
