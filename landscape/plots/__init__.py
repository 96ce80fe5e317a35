"""Figures drawn from stored HDF5 results alone; `plot_file` picks them from what a file holds."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from ..errors import LandscapeError
from ..store import list_results, read_result
from .esd import plot_esd
from .path import plot_interpolation
from .surface import plot_surface


def _slug(group: str) -> str:
    return group.strip("/").replace("/", "_").replace("~", "-")


def plot_file(path: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw every spectral density, interpolation curve and surface stored in `path` into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    curves: dict[str, dict] = defaultdict(dict)
    for group in sorted(list_results(path)):
        parts = group.split("/")
        if parts[0] == "models" and parts[-1] == "esd":
            arrays, attrs = read_result(path, group)
            target = out_dir / f"{_slug(group)}.png"
            plot_esd(arrays, attrs, target, f"Hessian ESD of {'/'.join(parts[1:-1])}")
            written.append(target)
        elif parts[0] == "barriers" and len(parts) == 3:
            curves[parts[1]][parts[2]] = read_result(path, group)[0]
        elif parts[0] == "surfaces" and len(parts) >= 3:
            arrays, attrs = read_result(path, group)
            written.append(plot_surface(arrays, attrs, out_dir / f"{_slug(group)}.png",
                                        f"{parts[-1]} loss surface of {'/'.join(parts[1:-1])}"))
    for pair, by_align in curves.items():
        written.append(plot_interpolation(by_align, out_dir / f"interpolation_{_slug(pair)}.png",
                                          f"Linear interpolation {pair.replace('~', ' to ')}"))
    if not written:
        raise LandscapeError(f"{path}: no spectral density, barrier curve or surface to plot")
    return written
