"""The curvature figure of a result file: per model, its top Hessian eigenvalue and its trace.

The eigenvalue comes with its Ritz error bound, the trace with ± the estimator's standard error,
drawn from stored `/models/<name>/eigenvalues` and `/trace` groups alone; models measured far from
a stationary point (docs/results.md, "Stationarity") are hatched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .figure import DPI, palette, save_figure, style

Measured = dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]  # model name -> (arrays, attrs)


def _bars(
    ax: Any,
    names: list[str],
    values: list[float],
    errors: list[float],
    far: list[bool],
    colour: str,
    label: str,
) -> None:
    """Draw one panel's bars into `ax`, those of models far from a stationary point hatched."""
    x = np.arange(len(names))
    ax.bar(
        x, values, yerr=errors, color=colour, edgecolor="0.2", capsize=4, error_kw={"elinewidth": 1}
    )
    for xi, value, is_far in zip(x, values, far):
        if is_far:
            ax.bar([xi], [value], color="none", edgecolor="0.2", hatch="//")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel(label)


def plot_curvature(
    eigen: Measured,
    trace: Measured,
    out_path: Path,
    title: str,
    formats: Sequence[str] = ("png",),
    dpi: int = DPI,
) -> list[Path]:
    """Top eigenvalue and trace of every model that has them, one panel each, models in name order.

    The eigenvalue's error bar is its Ritz bound, the trace's its standard error.

    Args:
        eigen: The stored eigenvalue results by model name: (arrays, attrs), the arrays with
            `eigenvalues` (and `bounds`).
        trace: The stored trace results by model name: (arrays, attrs), the attributes with
            `trace` (and `stderr`).
        out_path: The figure's path without suffix.
        title: The figure's title.
        formats: The formats to write.
        dpi: The resolution of raster formats.

    Returns:
        The files written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> arrays = {"eigenvalues": np.array([2.0, 5.0]), "bounds": np.array([0.1, 0.2])}
        >>> eigen = {"A": (arrays, {})}
        >>> trace = {"A": ({}, {"trace": 10.0, "stderr": 0.5, "point_far_from_stationary": True})}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = plot_curvature(eigen, trace, Path(tmp) / "c", "curvature", formats=("svg",))
        ...     print([f.name for f in files])
        ['c.svg']
    """
    panels = []
    if eigen:
        names = sorted(eigen)
        tops = [int(np.argmax(eigen[n][0]["eigenvalues"])) for n in names]
        values = [float(eigen[n][0]["eigenvalues"][i]) for n, i in zip(names, tops)]
        errors = [
            float(eigen[n][0]["bounds"][i]) if "bounds" in eigen[n][0] else 0.0
            for n, i in zip(names, tops)
        ]
        panels.append(
            (
                names,
                values,
                errors,
                [bool(eigen[n][1].get("point_far_from_stationary")) for n in names],
                "top Hessian eigenvalue",
            )
        )
    if trace:
        names = sorted(trace)
        panels.append(
            (
                names,
                [float(trace[n][1]["trace"]) for n in names],
                [float(trace[n][1].get("stderr", 0.0)) for n in names],
                [bool(trace[n][1].get("point_far_from_stationary")) for n in names],
                "Hessian trace",
            )
        )
    with style():
        fig = Figure(
            figsize=(max(4.0, 0.7 * max(len(p[0]) for p in panels) + 2.2) * len(panels), 4.0),
            layout="constrained",
        )
        axes = np.atleast_1d(fig.subplots(1, len(panels)))
        for ax, (names, values, errors, far, label), colour in zip(axes, panels, palette()):
            _bars(ax, names, values, errors, far, colour, label)
        if any(any(p[3]) for p in panels):
            axes[-1].legend(
                handles=[
                    Patch(
                        facecolor="white",
                        edgecolor="0.2",
                        hatch="//",
                        label="far from a stationary point",
                    )
                ],
                loc="best",
            )
        fig.suptitle(title)
        return save_figure(fig, out_path, formats, dpi)
