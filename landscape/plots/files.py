"""`plot_file`: the figures of whatever a result file holds, drawn from its stored arrays alone."""
from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..choices import CURVATURE_LABELS
from ..errors import LandscapeError, LandscapeWarning
from ..io.store import open_store
from .blocks import plot_blocks
from .esd import plot_esd
from .figure import DPI
from .path import plot_interpolation
from .surface import plot_surface, plot_surface_3d
from .vtk import write_vts


def _slug(group: str) -> str:
    return group.strip("/").replace("/", "_").replace("~", "-")


def _surface(arrays: dict, attrs: dict, path: Path, title: str, figures: Sequence[str], vtk: bool, dpi: int
             ) -> list[Path]:
    """A surface's figures in the `figures` formats, plus its 3-D figure and, with `vtk`, its `.vts` (2-D only)."""
    written = plot_surface(arrays, attrs, path, title, figures, dpi) if figures else []
    if "y" not in arrays:
        return written
    if figures:
        written += plot_surface_3d(arrays, attrs, path.with_name(path.name + "_3d"), title, figures, dpi)
    if vtk:
        done = np.asarray(arrays["done"], dtype=bool)
        if done.all():
            fields = {k: np.asarray(arrays[k], dtype=float) for k in ("loss", "acc") if k in arrays}
            written.append(write_vts(path, arrays["x"], arrays["y"], fields["loss"], fields))
        else:
            warnings.warn(f"{title}: {int((~done).sum())} of {done.size} points not computed yet, no VTK file "
                          "written (finish the contour first)", LandscapeWarning, stacklevel=2)
    return written


def plot_file(path: str | Path, out_dir: str | Path, formats: Sequence[str] = ("png",), dpi: int = DPI) -> list[Path]:
    """Draw every spectral density, per-block curvature, interpolation curve and surface stored in `path` into
    `out_dir`, each figure in every one of `formats`.

    `formats` may include "vtk": every complete 2-D surface is then also written as a VTK structured grid
    (`vtk.py`). Each 2-D surface is drawn as a contour and as a 3-D figure (`<name>_3d`). Nothing is created when
    the file holds nothing to draw.
    """
    out_dir = Path(out_dir)
    esds, blocks, surfaces, curves = [], [], [], defaultdict(dict)
    with open_store(path) as store:
        for group in sorted(store.results()):
            parts = group.split("/")
            if parts[0] == "models" and parts[-1] in ("esd", "block_eigenvalues", "block_trace"):
                attrs = store.attrs(group)
                label = CURVATURE_LABELS.get(str(attrs.get("curvature", "hessian")), "Hessian")
                what = {"esd": "ESD", "block_eigenvalues": "per-block top eigenvalue",
                        "block_trace": "per-block trace"}[parts[-1]]
                (esds if parts[-1] == "esd" else blocks).append((group, store.arrays(group), attrs,
                                                                 f"{label} {what} of {parts[1]}"))
            elif parts[0] == "barriers" and len(parts) == 3:
                curves[parts[1]][parts[2]] = [store.arrays(group)]
            elif parts[0] == "surfaces" and len(parts) >= 3:
                surfaces.append((group, store.arrays(group), store.attrs(group),
                                 f"{parts[-1]} loss surface of {'/'.join(parts[1:-1])}"))
    if not (esds or blocks or surfaces or curves):
        raise LandscapeError(f"{path}: no spectral density, barrier curve or surface (nor per-block curvature) to plot")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures = [f for f in formats if f != "vtk"]
    for group, arrays, attrs, title in esds if figures else ():
        written += plot_esd(arrays, attrs, out_dir / _slug(group), title, figures, dpi)
    for group, arrays, attrs, title in blocks if figures else ():
        written += plot_blocks(arrays, attrs, out_dir / _slug(group), title, figures, dpi)
    for group, arrays, attrs, title in surfaces:
        written += _surface(arrays, attrs, out_dir / _slug(group), title, figures, "vtk" in formats, dpi)
    for pair, by_align in curves.items() if figures else ():
        written += plot_interpolation(by_align, out_dir / f"interpolation_{_slug(pair)}",
                                      f"Linear interpolation {pair.replace('~', ' to ')}", figures, dpi)
    return written
