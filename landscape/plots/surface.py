"""Loss surfaces from stored `/surfaces/<name>/<kind>` groups: 1-D curves and 2-D contours.

A 1-D curve (loss and accuracy), or a 2-D grid as filled contours of the loss on a logarithmic
colour scale with thin iso-loss lines, the models marked and labelled at their coordinates. Several
2-D surfaces share one colour scale so that panels compare.
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
    """The names of the surface's `count` models.

    Returns:
        The stored `models`, or "model i" when they do not match the count.
    """
    names = attrs.get("models", [])
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(names)]
    return names if len(names) == count else [f"model {i}" for i in range(count)]


def _loss(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The stored loss.

    Returns:
        The loss, NaN at the points not computed yet.
    """
    return np.where(np.asarray(arrays["done"], dtype=bool), arrays["loss"], np.nan)


def _axis_labels(
    attrs: dict[str, Any], arrays: dict[str, np.ndarray] | None = None
) -> tuple[str, str]:
    """The axis labels of a 2-D surface, by its kind and direction normalisation.

    Returns:
        The x and y labels.
    """
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
    """Contour levels spaced evenly in log loss over all `surfaces` (one scale for several panels).

    Args:
        surfaces: (arrays, attrs) per surface; the points not computed yet (`done` false) are left
            out.
        levels: The number of levels.
        vmin: The lowest level; None for the smallest positive loss (1e-3 without any).
        vmax: The highest level; None for the largest loss (1 without any).

    Returns:
        `levels` values from `vmin` to `vmax`, evenly spaced in the logarithm.

    Raises:
        LandscapeError: Fewer than 2 levels, or a range that is not 0 < vmin < vmax.

    Examples:
        >>> surface = ({"loss": np.array([[0.1, 1.0], [10.0, 99.0]]),
        ...             "done": np.array([[True, True], [True, False]])}, {})
        >>> loss_levels([surface], levels=3).tolist()
        [0.1, 1.0, 10.0]
        >>> loss_levels([surface], levels=3, vmin=20.0)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: the colour scale needs 0 < vmin < vmax (a logarithmic ...
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


def _draw_surface(
    ax: Axes, arrays: dict[str, np.ndarray], attrs: dict[str, Any], levels: np.ndarray, title: str
) -> Any:
    """Filled log-scale contours of a 2-D surface with iso-loss lines and the models marked.

    Returns:
        The filled contour set (for a colorbar).
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
    """A 1-D surface: loss and accuracy in two panels, the models marked by dotted lines."""
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
    """One surface in its own figure: a 1-D curve, or a 2-D contour with its colorbar.

    Args:
        arrays: The stored arrays: `x` (and `y` for a 2-D surface), `loss`, `done`, `model_x`
            (and `model_y`), `acc` for a 1-D one, `path_x` and `path_y` for a trajectory.
        attrs: The stored attributes (`kind`, `models`, `split`, `direction_norm`).
        out_path: The figure's path (`save_figure`).
        title: The figure's title.
        formats: The formats to write.
        dpi: The resolution of raster formats.
        levels: The contour levels, shared with the surfaces it is compared with; None for its
            own `loss_levels`.

    Returns:
        The files written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> x = y = np.linspace(-1.0, 1.0, 5)
        >>> loss = 0.1 + x[:, None] ** 2 + y[None, :] ** 2
        >>> arrays = {"x": x, "y": y, "loss": loss, "done": np.ones((5, 5), bool),
        ...           "model_x": np.array([0.0]), "model_y": np.array([0.0])}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = plot_surface(arrays, {"models": ["A"]}, Path(tmp) / "s", "bowl",
        ...                          formats=("svg",))
        ...     print([f.name for f in files])
        ['s.svg']
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
            filled = _draw_surface(ax, arrays, attrs, levels, title)
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
    """A 2-D surface as a 3-D figure: the log10 of the loss as the height over the grid.

    The surface is coloured as the contour is; the models (and a PCA surface's trajectory) are drawn
    at the height of their nearest grid point.

    Args:
        arrays: The stored arrays of a 2-D surface (see `plot_surface`).
        attrs: The stored attributes.
        out_path: The figure's path (`save_figure`).
        title: The figure's title.
        formats: The formats to write.
        dpi: The resolution of raster formats.

    Returns:
        The files written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> x = y = np.linspace(-1.0, 1.0, 5)
        >>> loss = 0.1 + x[:, None] ** 2 + y[None, :] ** 2
        >>> arrays = {"x": x, "y": y, "loss": loss, "done": np.ones((5, 5), bool),
        ...           "model_x": np.array([0.0]), "model_y": np.array([0.0])}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = plot_surface_3d(arrays, {}, Path(tmp) / "s_3d", "bowl", formats=("svg",))
        ...     print([f.name for f in files])
        ['s_3d.svg']
    """
    x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
    gx, gy = np.meshgrid(x, y, indexing="ij")
    levels = loss_levels([(arrays, attrs)])
    height = np.log10(np.clip(_loss(arrays), levels[0], levels[-1]))

    def on_surface(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """The heights of the grid points nearest to (px, py).

        Returns:
            One height per point.
        """
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
    """Several 2-D surfaces side by side on one colour scale, with one colorbar.

    Args:
        panels: (title, arrays, attrs) per surface (see `plot_surface`).
        out_path: The figure's path (`save_figure`).
        title: The figure's title.
        formats: The formats to write.
        dpi: The resolution of raster formats.

    Returns:
        The files written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> x = y = np.linspace(-1.0, 1.0, 5)
        >>> loss = 0.1 + x[:, None] ** 2 + y[None, :] ** 2
        >>> arrays = {"x": x, "y": y, "loss": loss, "done": np.ones((5, 5), bool),
        ...           "model_x": np.array([0.0]), "model_y": np.array([0.0])}
        >>> steeper = {**arrays, "loss": 3 * arrays["loss"]}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = plot_surface_grid([("A", arrays, {}), ("B", steeper, {})], Path(tmp) / "g",
        ...                               "two bowls", formats=("svg",))
        ...     print([f.name for f in files])
        ['g.svg']
    """
    with style():
        fig = Figure(figsize=(4.6 * len(panels) + 0.8, 4.4), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(panels)))
        levels = loss_levels([(arrays, attrs) for _, arrays, attrs in panels])
        filled = None
        for ax, (name, arrays, attrs) in zip(axes, panels):
            filled = _draw_surface(ax, arrays, attrs, levels, name)
        _colorbar(fig, filled, list(axes), panels[0][2], levels)
        fig.suptitle(title)
        return save_figure(fig, out_path, formats, dpi)


def _nice_log_ticks(lo: float, hi: float) -> list[float]:
    """Round values between `lo` and `hi` for a logarithmic axis.

    The values are 1, 2 and 5 times a power of ten, or every integer multiple when that gives fewer
    than three.

    Returns:
        The ticks, or `lo` and `hi` when even the multiples give fewer than three.
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
    """The round ticks between `lo` and `hi` plus both ends themselves.

    So the labels span the whole colour range (a scale from 0.07 to 1.88 is labelled up to 1.88,
    not 1); a round tick closer to an end than `END_GAP` of the logarithmic scale gives way to it.

    Args:
        lo: The lowest value of the scale.
        hi: The highest value.

    Returns:
        The ticks, ascending.

    Examples:
        >>> colorbar_ticks(0.07, 1.88)
        [0.07, 0.1, 0.2, 0.5, 1.0, 1.88]
    """
    gap = END_GAP * np.log(hi / lo)
    inner = [t for t in _nice_log_ticks(lo, hi) if np.log(t / lo) >= gap and np.log(hi / t) >= gap]
    return [lo, *inner, hi]


def _colorbar(fig: Figure, filled: Any, ax: Any, attrs: dict[str, Any], levels: np.ndarray) -> None:
    """The colorbar of `filled` beside `ax`, labelled at `colorbar_ticks`."""
    split = attrs.get("split", "train")
    bar = fig.colorbar(filled, ax=ax, shrink=0.9)
    ticks = colorbar_ticks(float(levels[0]), float(levels[-1]))
    bar.set_ticks(ticks, labels=[f"{t:.3g}" for t in ticks])
    bar.minorticks_off()
    bar.set_label(f"{split} loss (logarithmic colour scale)")
