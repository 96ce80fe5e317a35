"""Loss surfaces from stored `/surfaces/<name>/<kind>` groups: a 1-D curve (loss and accuracy), or a
2-D grid as filled contours of the loss on a logarithmic colour scale with thin iso-loss lines, the
models marked and labelled at their coordinates. Several 2-D surfaces share one colour scale so that
panels compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from ..errors import LandscapeError
from .figure import DPI, save_figure, style

LEVELS = 24
Surface = tuple[dict[str, np.ndarray], dict[str, Any]]


def _names(attrs: dict[str, Any], count: int) -> list[str]:
    names = attrs.get("models", [])
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(names)]
    return names if len(names) == count else [f"model {i}" for i in range(count)]


def _loss(arrays: dict[str, np.ndarray]) -> np.ndarray:
    return np.where(np.asarray(arrays["done"], dtype=bool), arrays["loss"], np.nan)


def _axis_labels(
    attrs: dict[str, Any], arrays: dict[str, np.ndarray] | None = None
) -> tuple[str, str]:
    if attrs.get("kind") == "plane":
        return "distance along the plane, x", "distance along the plane, y"
    if attrs.get("kind") == "pca":
        shares = np.asarray((arrays or {}).get("explained", [np.nan, np.nan]), dtype=float)
        return tuple(
            f"PCA direction {i + 1} ({share:.1%} of the trajectory's variance)"
            for i, share in enumerate(shares[:2])
        )
    norm = str(attrs.get("direction_norm", "filter"))
    label = {
        "filter": "filter-normalised",
        "layer": "layer-normalised",
        "weight": "weight-scaled",
        "none": "unnormalised",
    }.get(norm, norm)
    return f"{label} direction 1", f"{label} direction 2"


def _trajectory(ax: Axes, arrays: dict[str, np.ndarray]) -> None:
    """A stored training trajectory (PCA surfaces) as a line of dots ending at the model."""
    if "path_x" in arrays:
        ax.plot(
            arrays["path_x"],
            arrays["path_y"],
            color="#d62728",
            lw=1.2,
            marker="o",
            ms=3,
            zorder=3,
            label="training trajectory",
        )
        ax.legend(loc="lower right", fontsize=7)


def loss_levels(
    surfaces: Sequence[Surface],
    levels: int = LEVELS,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """Contour levels spaced evenly in log loss over all `surfaces` (one colour scale for several
    panels), from `vmin` to `vmax` where given (else the surfaces' smallest and largest positive
    loss).

    Raises:
        LandscapeError: fewer than 2 levels, or a range that is not 0 < vmin < vmax.
    """
    if levels < 2:
        raise LandscapeError(f"`levels` must be at least 2, got {levels}")
    values = (
        np.concatenate([_loss(arrays).ravel() for arrays, _ in surfaces])
        if surfaces
        else np.zeros(0)
    )
    values = values[np.isfinite(values) & (values > 0)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (1e-3, 1.0)
    lo, hi = (lo if vmin is None else vmin), (hi if vmax is None else vmax)
    if not 0 < lo < hi:
        raise LandscapeError(
            f"the colour scale needs 0 < vmin < vmax (a logarithmic loss scale), got {lo:g} to "
            f"{hi:g}"
        )
    return np.geomspace(lo, max(hi, lo * 1.001), levels)


def draw_surface(
    ax: Axes, arrays: dict[str, np.ndarray], attrs: dict[str, Any], levels: np.ndarray, title: str
) -> Any:
    """Filled log-scale contours of a 2-D surface with iso-loss lines and the models marked; returns
    the filled contour set (for a colorbar).
    """
    x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
    gx, gy = np.meshgrid(x, y, indexing="ij")  # loss[i, j] is at (x[i], y[j])
    loss = np.clip(_loss(arrays), levels[0], levels[-1])
    norm = LogNorm(levels[0], levels[-1])
    filled = ax.contourf(gx, gy, loss, levels=levels, norm=norm, cmap="viridis")
    ax.contour(
        gx, gy, loss, levels=levels[::3], norm=norm, colors="white", linewidths=0.5, alpha=0.6
    )
    mx, my = np.asarray(arrays["model_x"]), np.asarray(arrays["model_y"])
    _trajectory(ax, arrays)
    ax.plot(mx, my, ls="none", marker="o", ms=7, mfc="white", mec="black", mew=1.2, zorder=3)
    for xi, yi, name in zip(mx, my, _names(attrs, len(mx))):
        ax.annotate(
            name,
            (xi, yi),
            textcoords="offset points",
            xytext=(0, 9),
            ha="center",
            va="bottom",
            fontsize=8,
            zorder=4,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6", "alpha": 0.85},
        )
    xlabel, ylabel = _axis_labels(attrs, arrays)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(False)
    return filled


def _curve(fig: Figure, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    mx = np.asarray(arrays["model_x"])
    axes = fig.subplots(1, 2)
    x = np.asarray(arrays["x"])
    for ax, values, label in (
        (axes[0], _loss(arrays), "loss"),
        (axes[1], arrays["acc"], "accuracy"),
    ):
        ax.plot(x, values)
        for xi, name in zip(mx, _names(attrs, len(mx))):
            ax.axvline(xi, color="0.5", ls=":", lw=0.8)
            ax.annotate(
                name,
                (xi, 0.98),
                xycoords=("data", "axes fraction"),
                ha="center",
                va="top",
                fontsize=8,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.6", "alpha": 0.85},
            )
        ax.set(xlabel="x" if attrs.get("kind") != "path" else "t (model k at t = k)", ylabel=label)


def plot_surface(
    arrays: dict[str, np.ndarray],
    attrs: dict[str, Any],
    out_path: str | Path,
    title: str,
    formats: Sequence[str] = ("png",),
    dpi: int = DPI,
    levels: np.ndarray | None = None,
) -> list[Path]:
    """One surface in its own figure: a 1-D curve, or a 2-D contour with its colorbar (on `levels`,
    shared with the surfaces it is compared with, else its own `loss_levels`).
    """
    with style():
        if "y" not in arrays:
            fig = Figure(figsize=(9, 3.5), layout="constrained")
            _curve(fig, arrays, attrs)
            fig.suptitle(title)
        else:
            fig = Figure(figsize=(6, 4.6), layout="constrained")
            ax = fig.subplots()
            levels = loss_levels([(arrays, attrs)]) if levels is None else levels
            filled = draw_surface(ax, arrays, attrs, levels, title)
            _colorbar(fig, filled, ax, attrs, levels)
        return save_figure(fig, out_path, formats, dpi)


def plot_surface_3d(
    arrays: dict[str, np.ndarray],
    attrs: dict[str, Any],
    out_path: str | Path,
    title: str,
    formats: Sequence[str] = ("png",),
    dpi: int = DPI,
) -> list[Path]:
    """A 2-D surface as a 3-D figure: the log10 of the loss as the height over the grid, coloured as
    the contour is, the models (and a PCA surface's trajectory) drawn at the height of their nearest
    grid point; returns the files written.
    """
    x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
    gx, gy = np.meshgrid(x, y, indexing="ij")
    levels = loss_levels([(arrays, attrs)])
    height = np.log10(np.clip(_loss(arrays), levels[0], levels[-1]))

    def on_surface(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        return np.array(
            [height[np.abs(x - a).argmin(), np.abs(y - b).argmin()] for a, b in zip(px, py)]
        )

    with style():
        fig = Figure(figsize=(6.4, 5.0), layout="constrained")
        ax = fig.add_subplot(projection="3d")
        ax.plot_surface(
            gx,
            gy,
            height,
            cmap="viridis",
            vmin=np.log10(levels[0]),
            vmax=np.log10(levels[-1]),
            rstride=1,
            cstride=1,
            linewidth=0,
            antialiased=True,
            alpha=0.9,
        )
        if "path_x" in arrays:
            px, py = np.asarray(arrays["path_x"]), np.asarray(arrays["path_y"])
            ax.plot(px, py, on_surface(px, py), color="#d62728", lw=1.5, marker="o", ms=3, zorder=5)
        mx, my = np.asarray(arrays["model_x"]), np.asarray(arrays["model_y"])
        ax.scatter(
            mx,
            my,
            on_surface(mx, my),
            color="white",
            edgecolor="black",
            s=30,
            depthshade=False,
            zorder=6,
        )
        # short axis names: the contour figure beside this one gives the long ones
        xlabel, ylabel = (
            label.replace(" of the trajectory's variance", "").replace(
                "distance along the plane, ", ""
            )
            for label in _axis_labels(attrs, arrays)
        )
        ax.set(
            xlabel=xlabel,
            ylabel=ylabel,
            zlabel=f"log10 {attrs.get('split', 'train')} loss",
            title=title,
        )
        for axis in (ax.xaxis, ax.yaxis):
            axis.label.set_fontsize(8)
        return save_figure(fig, out_path, formats, dpi)


def plot_surface_grid(
    panels: Sequence[tuple[str, dict[str, np.ndarray], dict[str, Any]]],
    out_path: str | Path,
    title: str,
    formats: Sequence[str] = ("png",),
    dpi: int = DPI,
) -> list[Path]:
    """Several 2-D surfaces `(title, arrays, attrs)` side by side on one colour scale, one
    colorbar.
    """
    with style():
        fig = Figure(figsize=(4.6 * len(panels) + 0.8, 4.4), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(panels)))
        levels = loss_levels([(arrays, attrs) for _, arrays, attrs in panels])
        filled = None
        for ax, (name, arrays, attrs) in zip(axes, panels):
            filled = draw_surface(ax, arrays, attrs, levels, name)
        _colorbar(fig, filled, list(axes), panels[0][2], levels)
        fig.suptitle(title)
        return save_figure(fig, out_path, formats, dpi)


def nice_log_ticks(lo: float, hi: float) -> list[float]:
    """Round values (1, 2, 5 times a power of ten; every integer multiple when that gives fewer than
    three) between `lo` and `hi`, for a logarithmic axis.
    """
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    for multiples in ((1, 2, 5), range(1, 10)):
        ticks = [m * 10.0**d for d in decades for m in multiples if lo <= m * 10.0**d <= hi]
        if len(ticks) >= 3:
            return ticks
    return [lo, hi]


# a round tick closer than this share of the (logarithmic) scale to an end gives way to the end
END_GAP = 0.06


def colorbar_ticks(lo: float, hi: float) -> list[float]:
    """The round ticks between `lo` and `hi` plus both ends themselves, so that the labels span the
    whole colour range (a scale from 0.07 to 1.88 is labelled up to 1.88, not 1).
    """
    gap = END_GAP * np.log(hi / lo)
    inner = [t for t in nice_log_ticks(lo, hi) if np.log(t / lo) >= gap and np.log(hi / t) >= gap]
    return [lo, *inner, hi]


def _colorbar(fig: Figure, filled: Any, ax: Any, attrs: dict[str, Any], levels: np.ndarray) -> None:
    split = attrs.get("split", "train")
    bar = fig.colorbar(filled, ax=ax, shrink=0.9)
    ticks = colorbar_ticks(float(levels[0]), float(levels[-1]))
    bar.set_ticks(ticks, labels=[f"{t:.3g}" for t in ticks])
    bar.minorticks_off()
    bar.set_label(f"{split} loss (logarithmic colour scale)")
