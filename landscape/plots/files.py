"""`plot_file`: the figures of whatever a result file holds, drawn from its stored arrays alone."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..choices import CURVATURE_LABELS
from ..errors import LandscapeError
from ..io.store import open_store
from .blocks import plot_blocks
from .esd import plot_esd
from .figure import DPI
from .path import plot_interpolation
from .surface import plot_surface


def _slug(group: str) -> str:
    return group.strip("/").replace("/", "_").replace("~", "-")


def plot_file(path: str | Path, out_dir: str | Path, formats: Sequence[str] = ("png",), dpi: int = DPI) -> list[Path]:
    """Draw every spectral density, per-block curvature, interpolation curve and surface stored in `path` into
    `out_dir`, each figure in every one of `formats`.

    Nothing is created when the file holds nothing to draw.
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
    for group, arrays, attrs, title in esds:
        written += plot_esd(arrays, attrs, out_dir / _slug(group), title, formats, dpi)
    for group, arrays, attrs, title in blocks:
        written += plot_blocks(arrays, attrs, out_dir / _slug(group), title, formats, dpi)
    for group, arrays, attrs, title in surfaces:
        written += plot_surface(arrays, attrs, out_dir / _slug(group), title, formats, dpi)
    for pair, by_align in curves.items():
        written += plot_interpolation(by_align, out_dir / f"interpolation_{_slug(pair)}",
                                      f"Linear interpolation {pair.replace('~', ' to ')}", formats, dpi)
    return written
