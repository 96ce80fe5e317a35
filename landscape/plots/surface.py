"""Loss surfaces from a stored `/surfaces/<name>/<kind>` group: a 1-D curve (loss and accuracy) or, for 2-D
grids, line contours beside filled contours, with the models marked at their coordinates."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .figure import save_figure


def _names(attrs: dict[str, Any], count: int) -> list[str]:
    names = attrs.get("models", [])
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(names)]
    return names if len(names) == count else [f"model {i}" for i in range(count)]


def plot_surface(arrays: dict[str, np.ndarray], attrs: dict[str, Any], out_path: str | Path, title: str,
                 levels: int = 30) -> Path:
    """Draw a 1-D curve or a 2-D contour (axis order x, y as stored) with the models marked."""
    mx, my = np.asarray(arrays["model_x"]), np.asarray(arrays["model_y"])
    names = _names(attrs, len(mx))
    loss = np.where(np.asarray(arrays["done"], dtype=bool), arrays["loss"], np.nan)
    if "y" not in arrays:
        x = np.asarray(arrays["x"])
        fig = Figure(figsize=(9, 3.5))
        axes = fig.subplots(1, 2)
        for ax, values, label in ((axes[0], loss, "loss"), (axes[1], arrays["acc"], "accuracy")):
            ax.plot(x, values, color="tab:blue")
            for xi, name in zip(mx, names):
                ax.axvline(xi, color="0.5", ls=":", lw=0.8)
                ax.annotate(name, (xi, 0.98), xycoords=("data", "axes fraction"), ha="center", va="top", fontsize=7)
            ax.set(xlabel="x" if attrs.get("kind") != "path" else "t (model k at t = k)", ylabel=label)
            ax.grid(alpha=0.3)
    else:
        x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
        fig = Figure(figsize=(10, 4.2))
        axes = fig.subplots(1, 2)
        gx, gy = np.meshgrid(x, y, indexing="ij")  # loss[i, j] is at (x[i], y[j])
        lines = axes[0].contour(gx, gy, loss, levels=levels, cmap="viridis")
        axes[0].clabel(lines, fontsize=6, fmt="%.2g")
        filled = axes[1].contourf(gx, gy, np.log(np.maximum(loss, 1e-12)), levels=levels, cmap="viridis")
        fig.colorbar(filled, ax=axes[1], label="log loss")
        for ax in axes:
            ax.plot(mx, my, "r*", ms=10, ls="none")
            for xi, yi, name in zip(mx, my, names):
                ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7, color="red")
            ax.set(xlabel="x", ylabel="y", aspect="equal" if attrs.get("kind") == "plane" else "auto")
    fig.suptitle(title)
    return save_figure(fig, out_path)
