"""The interpolation figure of the seed study (figures 1-2): loss and accuracy from A (a=0) to B (a=1), train
solid and test dashed, before and after alignment, with the vanilla average (a=0.5 before alignment) and the
OT fusion (a=0.5 after alignment: the average of B and A aligned to B) marked."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .figure import save_figure

STYLE = {"none": ("tab:red", "pre-alignment", "vanilla avg"), "ot": ("tab:blue", "post OT alignment", "OT fusion")}


def plot_interpolation(curves: Mapping[str, dict[str, np.ndarray]], out_path: str | Path, title: str) -> Path:
    """Draw the stored curves `{align: arrays}` (align `none` and/or `ot`) into one two-panel figure."""
    fig = Figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2)
    for align, arrays in curves.items():
        color, label, marker_label = STYLE.get(align, ("tab:green", align, None))
        a = np.asarray(arrays["alphas"])
        for ax, what in zip(axes, ("loss", "acc")):
            for split, ls in (("train", "-"), ("test", "--")):
                ax.plot(a, arrays[f"{split}_{what}"], ls, color=color, label=f"{label}, {split}")
            if marker_label:
                mid = float(np.interp(0.5, a, arrays[f"train_{what}"]))
                ax.plot([0.5], [mid], marker="*", ms=12, color=color, ls="none", label=f"{marker_label} (train)")
    for ax, what in zip(axes, ("cross-entropy loss", "accuracy")):
        ax.set(xlabel="a  (0 = A, 1 = B)", ylabel=what)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, out_path)
