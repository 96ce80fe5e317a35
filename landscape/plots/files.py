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
from .curvature import plot_curvature
from .esd import plot_esd_overlay
from .figure import DPI
from .path import plot_interpolation
from .surface import LEVELS, loss_levels, plot_surface, plot_surface_3d
from .vtk import write_vts


def _slug(group: str) -> str:
    """A group's name as part of a file name.

    Returns:
        The name without its outer slashes, "/" as "_" and "~" as "-".
    """
    return group.strip("/").replace("/", "_").replace("~", "-")


def _model(parts: list[str], attrs: dict) -> str:
    """The model of a `/models/<name>[/<curvature>]/<what>` group's parts.

    Returns:
        The model's name.
    """
    inner = parts[1:-1]
    return "/".join(inner[:-1] if len(inner) > 1 and inner[-1] == attrs.get("curvature") else inner)


def _surface(
    arrays: dict,
    attrs: dict,
    path: Path,
    title: str,
    figures: Sequence[str],
    vtk: bool,
    dpi: int,
    scale: np.ndarray | None,
) -> list[Path]:
    """A surface's figures in the `figures` formats, its 3-D figure and, with `vtk`, its `.vts`.

    2-D contours are drawn on the shared colour `scale`; the 3-D figure and the `.vts` are for 2-D
    surfaces only.

    Returns:
        The files written.
    """
    written = plot_surface(arrays, attrs, path, title, figures, dpi, scale) if figures else []
    if "y" not in arrays:
        return written
    if figures:
        written += plot_surface_3d(
            arrays, attrs, path.with_name(path.name + "_3d"), title, figures, dpi
        )
    if vtk:
        done = np.asarray(arrays["done"], dtype=bool)
        if done.all():
            fields = {k: np.asarray(arrays[k], dtype=float) for k in ("loss", "acc") if k in arrays}
            written.append(write_vts(path, arrays["x"], arrays["y"], fields["loss"], fields))
        else:
            warnings.warn(
                f"{title}: {int((~done).sum())} of {done.size} points not computed yet, no VTK "
                "file written (finish the contour first)",
                LandscapeWarning,
                stacklevel=2,
            )
    return written


def plot_file(
    path: str | Path,
    out_dir: str | Path,
    formats: Sequence[str] = ("png",),
    dpi: int = DPI,
    levels: int = LEVELS,
    vmin: float | None = None,
    vmax: float | None = None,
) -> list[Path]:
    """Draw every figure of what the result file at `path` holds into `out_dir`.

    Its eigenvalues and traces (one figure), spectral densities, per-block curvature, interpolation
    curves and surfaces are drawn, each figure in every one of `formats`. All 2-D surfaces share one
    colour scale of `levels` log-spaced levels (from `vmin` to `vmax` where given: fix them to
    compare figures of several files).

    `formats` may include "vtk": every complete 2-D surface is then also written as a VTK structured
    grid (`vtk.py`). Each 2-D surface is drawn as a contour and as a 3-D figure (`<name>_3d`).
    Nothing is created when the file holds nothing to draw.

    The spectral densities of one curvature are overlaid in one figure (`esd_<curvature>`,
    `esd.plot_esd_overlay`). Every file name starts with the stem of `path` (`<stem>_curvature.png`,
    ...), so the figures of several files written into one `out_dir` never overwrite each other.

    Args:
        path: The result file.
        out_dir: The folder the figures go to (created when missing).
        formats: The figure formats, and "vtk" for the `.vts` grids.
        dpi: The resolution of raster formats.
        levels: The number of contour levels.
        vmin: The lowest loss of the colour scale; None for the surfaces' smallest.
        vmax: The highest loss of the colour scale; None for the surfaces' largest.

    Returns:
        The files written.

    Raises:
        LandscapeError: The file holds nothing to draw (an impossible colour scale is refused by
            `surface.loss_levels`).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from landscape.io.store import write_results
        >>> curve = {"alphas": [0.0, 0.5, 1.0], "train_loss": [0.1, 2.0, 0.1],
        ...          "test_loss": [0.2, 2.1, 0.2], "train_acc": [1.0, 0.4, 1.0],
        ...          "test_acc": [0.9, 0.4, 0.9]}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     store = Path(tmp) / "run.h5"
        ...     write_results(store, {"models/A/eigenvalues": ({"eigenvalues": [4.0, 1.0]}, {}),
        ...                           "barriers/A~B/none": (curve, {})})
        ...     files = plot_file(store, Path(tmp) / "figures", formats=("svg",))
        ...     print(sorted(f.name for f in files))
        ['run_curvature.svg', 'run_interpolation_A-B.svg']
    """
    out_dir, stem = Path(out_dir), Path(path).stem
    esds: dict[str, list] = defaultdict(list)
    blocks, surfaces, curves = [], [], defaultdict(dict)
    measured: dict[str, dict] = {"eigenvalues": {}, "trace": {}}
    with open_store(path) as store:
        for group in sorted(store.results()):
            parts = group.split("/")
            if parts[0] == "models" and parts[-1] == "esd":
                attrs = store.attrs(group)
                esds[str(attrs.get("curvature", "hessian"))].append(
                    (_model(parts, attrs), store.arrays(group), attrs)
                )
            elif parts[0] == "models" and parts[-1] in ("block_eigenvalues", "block_trace"):
                attrs = store.attrs(group)
                label = CURVATURE_LABELS.get(str(attrs.get("curvature", "hessian")), "Hessian")
                what = {
                    "block_eigenvalues": "per-block top eigenvalue",
                    "block_trace": "per-block trace",
                }[parts[-1]]
                blocks.append(
                    (
                        group,
                        store.arrays(group),
                        attrs,
                        f"{label} {what} of {'/'.join(parts[1:-1])}",
                    )
                )
            elif parts[0] == "models" and parts[-1] in measured:
                measured[parts[-1]]["/".join(parts[1:-1])] = (
                    store.arrays(group),
                    store.attrs(group),
                )
            elif parts[0] == "barriers" and len(parts) == 3:
                curves[parts[1]][parts[2]] = [store.arrays(group)]
            elif parts[0] == "surfaces" and len(parts) >= 3:
                surfaces.append(
                    (
                        group,
                        store.arrays(group),
                        store.attrs(group),
                        f"{parts[-1]} loss surface of {'/'.join(parts[1:-1])}",
                    )
                )
    if not (esds or blocks or surfaces or curves or measured["eigenvalues"] or measured["trace"]):
        raise LandscapeError(
            f"{path}: no eigenvalue, trace, per-block curvature, spectral density, barrier curve "
            "or surface to plot"
        )
    contours = [(arrays, attrs) for _, arrays, attrs, _ in surfaces if "y" in arrays]
    scale = loss_levels(contours, levels, vmin, vmax) if contours else None
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures = [f for f in formats if f != "vtk"]
    if figures and (measured["eigenvalues"] or measured["trace"]):
        written += plot_curvature(
            measured["eigenvalues"],
            measured["trace"],
            out_dir / f"{stem}_curvature",
            f"Curvature of the models in {Path(path).name}",
            figures,
            dpi,
        )
    for curvature, curves_of in esds.items() if figures else ():
        written += plot_esd_overlay(
            curves_of,
            out_dir / f"{stem}_esd_{curvature}",
            f"{CURVATURE_LABELS.get(curvature, 'Hessian')} ESD of the models in {Path(path).name}",
            figures,
            dpi,
        )
    for group, arrays, attrs, title in blocks if figures else ():
        written += plot_blocks(
            arrays, attrs, out_dir / f"{stem}_{_slug(group)}", title, figures, dpi
        )
    for group, arrays, attrs, title in surfaces:
        written += _surface(
            arrays,
            attrs,
            out_dir / f"{stem}_{_slug(group)}",
            title,
            figures,
            "vtk" in formats,
            dpi,
            scale,
        )
    for pair, by_align in curves.items() if figures else ():
        written += plot_interpolation(
            by_align,
            out_dir / f"{stem}_interpolation_{_slug(pair)}",
            f"Linear interpolation {pair.replace('~', ' to ')}",
            figures,
            dpi,
        )
    return written
