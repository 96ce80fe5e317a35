"""Per-layer curvature figures: one horizontal bar per parameter block.

Each bar is the block's diagonal block's top eigenvalue or trace (with the standard error where
estimated), drawn from a stored `block_eigenvalues` or `block_trace` group alone
(`curvature.blocks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..choices import CURVATURE_LABELS
from .figure import DPI, palette, save_figure, style


def plot_blocks(
    arrays: dict[str, np.ndarray],
    attrs: dict[str, Any],
    out_path: Path,
    title: str,
    formats: Sequence[str] = ("png",),
    dpi: int = DPI,
) -> list[Path]:
    """Bars of each block's top eigenvalue or trace, blocks top to bottom in the model's order.

    The axis is symmetric-log when the values span more than two decades.

    Args:
        arrays: The stored arrays: `eigenvalues`, or `trace` and `stderr`.
        attrs: The stored attributes: `blocks` (the names) and `curvature`.
        out_path: The figure's path (`save_figure`).
        title: The figure's title.
        formats: The formats to write.
        dpi: The resolution of raster formats.

    Returns:
        The files written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> arrays = {"eigenvalues": np.array([3.0, 0.5])}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = plot_blocks(arrays, {"blocks": ["fc1", "fc2"]}, Path(tmp) / "b", "blocks",
        ...                         formats=("svg",))
        ...     print([f.name for f in files])
        ['b.svg']
    """
    names = list(np.atleast_1d(attrs.get("blocks", [])))
    trace = "trace" in arrays
    values = np.asarray(arrays["trace" if trace else "eigenvalues"], dtype=float)
    errors = np.asarray(arrays["stderr"], dtype=float) if trace else None
    names = names if len(names) == len(values) else [f"block {i}" for i in range(len(values))]
    label = CURVATURE_LABELS.get(str(attrs.get("curvature", "hessian")), "Hessian")
    with style():
        fig = Figure(figsize=(6.0, 1.2 + 0.28 * len(values)), layout="constrained")
        ax = fig.subplots()
        rows = np.arange(len(values))
        ax.barh(rows, values, xerr=errors, color=palette()[0], ecolor="0.3", capsize=2)
        ax.set_yticks(rows, names, fontsize=7)
        ax.invert_yaxis()
        finite = np.abs(values[np.isfinite(values) & (values != 0)])
        if finite.size and finite.max() > 100 * finite.min():
            ax.set_xscale("symlog", linthresh=float(finite.min()))
        ax.axvline(0.0, color="0.5", lw=0.8)
        ax.set_xlabel(f"{label} {'trace' if trace else 'top eigenvalue'} of the block")
        ax.set_title(title)
        return save_figure(fig, out_path, formats, dpi)
