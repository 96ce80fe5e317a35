"""The interpolation figure of the seed study (figures 1-2): loss and accuracy from A to B.

Loss and accuracy from A (a=0) to B (a=1), train solid and test dashed, before and after alignment,
with the vanilla average (a=0.5 before alignment) and the OT fusion (a=0.5 after alignment: the
average of B and A aligned to B) marked. Several curves of one kind (replicates) are drawn as their
mean with a band of one standard deviation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .figure import DPI, palette, save_figure, style

# align ("none" | "ot") -> one curve per replicate
Curves = Mapping[str, Sequence[dict[str, np.ndarray]]]
LABELS = {
    "none": ("pre-alignment", "vanilla avg"),
    "ot": ("post OT alignment", "OT fusion"),
    "rebasin": ("post Re-Basin alignment", "Re-Basin fusion"),
    "bezier": ("Bezier curve (a = t)", None),
    "polychain": ("polychain curve (a = t)", None),
}
WHAT = {"loss": "cross-entropy loss", "acc": "accuracy"}


def _colours() -> dict[str, tuple]:
    """The colour of each kind of curve.

    Returns:
        Palette colours by alignment name.
    """
    colours = palette()
    return {
        "none": colours[3],
        "ot": colours[0],
        "rebasin": colours[4],
        "bezier": colours[2],
        "polychain": colours[5],
    }


def draw_interpolation(ax: Axes, curves: Curves, what: str) -> None:
    """Draw `what` along the line for every alignment in `curves` into `ax`.

    Train is solid and test dashed; several runs of one alignment are drawn as their mean with a
    band of one standard deviation; the vanilla average and the fusions are starred at a = 0.5.

    Args:
        ax: The axes to draw into.
        curves: `{align: [arrays, ...]}`, each run's arrays with `alphas`, `train_<what>` and
            `test_<what>`.
        what: "loss" or "acc".

    Examples:
        >>> from matplotlib.figure import Figure
        >>> run = {"alphas": [0.0, 0.5, 1.0], "train_loss": [0.1, 2.0, 0.1],
        ...        "test_loss": [0.2, 2.1, 0.2], "train_acc": [1.0, 0.4, 1.0],
        ...        "test_acc": [0.9, 0.4, 0.9]}
        >>> ax = Figure().subplots()
        >>> draw_interpolation(ax, {"none": [run]}, "loss")
        >>> len(ax.lines), ax.get_ylabel()  # train, test and the vanilla average
        (3, 'cross-entropy loss')
    """
    colours = _colours()
    for align, runs in curves.items():
        if not runs:
            continue
        colour = colours.get(align, "0.3")
        label, marker_label = LABELS.get(align, (align, None))
        a = np.asarray(runs[0]["alphas"])
        for split, ls in (("train", "-"), ("test", "--")):
            values = np.stack([np.asarray(r[f"{split}_{what}"], dtype=float) for r in runs])
            mean = values.mean(axis=0)
            ax.plot(a, mean, ls=ls, color=colour, label=f"{label}, {split}")
            if len(runs) > 1:
                sd = values.std(axis=0, ddof=1)
                ax.fill_between(a, mean - sd, mean + sd, color=colour, alpha=0.18, lw=0)
        if marker_label:
            train = np.stack([np.asarray(r[f"train_{what}"], dtype=float) for r in runs]).mean(
                axis=0
            )
            ax.plot(
                [0.5],
                [float(np.interp(0.5, a, train))],
                marker="*",
                ms=13,
                mec="black",
                mew=0.6,
                color=colour,
                ls="none",
                label=f"{marker_label} (train)",
                zorder=3,
            )
    ax.set(xlabel="a  (0 = A, 1 = B)", ylabel=WHAT[what], xlim=(0, 1))


def plot_interpolation(
    curves: Curves,
    out_path: str | Path,
    title: str,
    formats: Sequence[str] = ("png",),
    dpi: int = DPI,
) -> list[Path]:
    """One pair's curves in a two-panel figure (loss, accuracy), the legend below.

    Args:
        curves: `{align: [arrays, ...]}` (see `draw_interpolation`), with both loss and accuracy.
        out_path: The figure's path (`save_figure`).
        title: The figure's title.
        formats: The formats to write.
        dpi: The resolution of raster formats.

    Returns:
        The files written.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> run = {"alphas": [0.0, 0.5, 1.0], "train_loss": [0.1, 2.0, 0.1],
        ...        "test_loss": [0.2, 2.1, 0.2], "train_acc": [1.0, 0.4, 1.0],
        ...        "test_acc": [0.9, 0.4, 0.9]}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = plot_interpolation({"none": [run], "ot": [run, run]}, Path(tmp) / "path",
        ...                                "A to B", formats=("svg",))
        ...     print([f.name for f in files])
        ['path.svg']
    """
    with style():
        fig = Figure(figsize=(9, 4), layout="constrained")
        axes = fig.subplots(1, 2)
        for ax, what in zip(axes, ("loss", "acc")):
            draw_interpolation(ax, curves, what)
        legend_below(fig, axes[0])
        fig.suptitle(title)
        return save_figure(fig, out_path, formats, dpi)


def legend_below(fig: Figure, ax: Axes, columns: int = 3) -> None:
    """One legend for the whole figure, under the panels (it never covers data).

    Args:
        fig: The figure.
        ax: The axes whose handles and labels the legend shows (none: no legend).
        columns: The legend's number of columns.

    Examples:
        >>> fig = Figure()
        >>> ax = fig.subplots()
        >>> _ = ax.plot([0, 1], [0, 1], label="A")
        >>> legend_below(fig, ax)
        >>> [t.get_text() for t in fig.legends[0].get_texts()]
        ['A']
    """
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=columns)
