"""`plot_file`: the figures of whatever a result file holds, drawn from its stored arrays alone."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..errors import LandscapeError
from ..io.store import open_store
from .curvature import plot_curvature
from .esd import plot_esd
from .figure import DPI
from .path import plot_interpolation
from .surface import LEVELS, loss_levels, plot_surface


def _slug(group: str) -> str:
    return group.strip("/").replace("/", "_").replace("~", "-")


def plot_file(path: str | Path, out_dir: str | Path, formats: Sequence[str] = ("png",), dpi: int = DPI,
              levels: int = LEVELS, vmin: float | None = None, vmax: float | None = None) -> list[Path]:
    """Draw every spectral density, interpolation curve and surface stored in `path` into `out_dir`, each
    figure in every one of `formats`. All 2-D surfaces share one colour scale of `levels` log-spaced levels
    (from `vmin` to `vmax` where given: fix them to compare figures of several files).

    Nothing is created when the file holds nothing to draw.

    Raises:
        LandscapeError: nothing to draw, or an impossible colour scale.
    """
    out_dir = Path(out_dir)
    esds, surfaces, curves = [], [], defaultdict(dict)
    measured: dict[str, dict] = {"eigenvalues": {}, "trace": {}}
    with open_store(path) as store:
        for group in sorted(store.results()):
            parts = group.split("/")
            if parts[0] == "models" and parts[-1] == "esd":
                esds.append((group, store.arrays(group), store.attrs(group), "/".join(parts[1:-1])))
            elif parts[0] == "models" and parts[-1] in measured:
                measured[parts[-1]]["/".join(parts[1:-1])] = (store.arrays(group), store.attrs(group))
            elif parts[0] == "barriers" and len(parts) == 3:
                curves[parts[1]][parts[2]] = [store.arrays(group)]
            elif parts[0] == "surfaces" and len(parts) >= 3:
                surfaces.append((group, store.arrays(group), store.attrs(group),
                                 f"{parts[-1]} loss surface of {'/'.join(parts[1:-1])}"))
    if not (esds or surfaces or curves or measured["eigenvalues"] or measured["trace"]):
        raise LandscapeError(f"{path}: no eigenvalue, trace, spectral density, barrier curve or surface to plot")
    contours = [(arrays, attrs) for _, arrays, attrs, _ in surfaces if "y" in arrays]
    scale = loss_levels(contours, levels, vmin, vmax) if contours else None
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if measured["eigenvalues"] or measured["trace"]:
        written += plot_curvature(measured["eigenvalues"], measured["trace"], out_dir / "curvature",
                                  f"Curvature of the models in {Path(path).name}", formats, dpi)
    for group, arrays, attrs, name in esds:
        written += plot_esd(arrays, attrs, out_dir / _slug(group), f"Hessian ESD of {name}", formats, dpi)
    for group, arrays, attrs, title in surfaces:
        written += plot_surface(arrays, attrs, out_dir / _slug(group), title, formats, dpi, scale)
    for pair, by_align in curves.items():
        written += plot_interpolation(by_align, out_dir / f"interpolation_{_slug(pair)}",
                                      f"Linear interpolation {pair.replace('~', ' to ')}", formats, dpi)
    return written
