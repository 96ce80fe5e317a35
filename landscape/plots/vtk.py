"""A 2-D loss surface as a VTK XML structured grid (`.vts`).

It is the file ParaView, VisIt and VTK's readers open. The format is Kitware's XML StructuredGrid
("VTK File Formats", The VTK User's Guide, 11th ed., Kitware 2010): a
`<VTKFile type="StructuredGrid">` whose `<Piece Extent="0 nx-1 0 ny-1 0 0">` holds the points
`(x_i, y_j, loss_ij)`, i varying fastest, and one `<PointData>` array per stored quantity (loss,
accuracy), written as ASCII so the file reads in any text editor. The third coordinate is the loss
itself, so the grid opens as the surface (only complete surfaces are written: `files.plot_file`). No
library is needed: meshio, the maintained pure-Python mesh writer, writes unstructured grids
(`.vtu`) only, and VTK's own Python wheels are far heavier than this format.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import LandscapeError
from ..io.atomic import atomic_path


def _values(a: np.ndarray) -> str:
    """The values of `a`, flattened, as ASCII.

    Returns:
        The values' reprs as float64, separated by spaces.
    """
    return " ".join(repr(float(v)) for v in np.asarray(a, dtype=np.float64).ravel())


def write_vts(
    path: str | Path,
    x: np.ndarray,
    y: np.ndarray,
    height: np.ndarray,
    fields: Mapping[str, np.ndarray],
) -> Path:
    """Write the grid of points (x[i], y[j], height[i, j]) and the point arrays `fields`.

    The file is written atomically.

    Args:
        path: The file to write (suffix `.vts` added when missing).
        x: The grid's first axis.
        y: The grid's second axis.
        height: The third coordinate of each point (the loss), shape (len(x), len(y)).
        fields: Named point arrays, e.g. {"loss": ..., "acc": ...}, each (len(x), len(y)) with value
            [i, j] at point (i, j).

    Returns:
        The file written.

    Raises:
        LandscapeError: An array's shape is not (len(x), len(y)).

    Examples:
        >>> import tempfile
        >>> loss = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = write_vts(Path(tmp) / "surface", [0.0, 1.0], [0.0, 1.0, 2.0], loss,
        ...                     {"loss": loss})
        ...     text = out.read_text()
        >>> out.name, 'Extent="0 1 0 2 0 0"' in text
        ('surface.vts', True)
        >>> "1.0 4.0 2.0 5.0 3.0 6.0</DataArray>" in text  # x varies fastest
        True
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    shape = (len(x), len(y))
    for name, a in {"height": height, **fields}.items():
        if np.shape(a) != shape:
            raise LandscapeError(f"VTK grid: {name} has shape {np.shape(a)}, the axes give {shape}")
    gx, gy = np.meshgrid(x, y, indexing="ij")
    # VTK orders points with the first index fastest: transpose the (i, j) arrays to (j, i) before
    # flattening
    points = np.stack([gx.T, gy.T, np.asarray(height, dtype=np.float64).T], axis=-1)
    extent = f"0 {shape[0] - 1} 0 {shape[1] - 1} 0 0"
    arrays = "".join(
        f'        <DataArray type="Float64" Name="{name}" format="ascii">{_values(np.asarray(a).T)}'
        "</DataArray>\n"
        for name, a in fields.items()
    )
    text = (
        '<?xml version="1.0"?>\n'
        '<VTKFile type="StructuredGrid" version="1.0" byte_order="LittleEndian">\n'
        f'  <StructuredGrid WholeExtent="{extent}">\n'
        f'    <Piece Extent="{extent}">\n'
        f'      <PointData Scalars="{next(iter(fields), "")}">\n{arrays}      </PointData>\n'
        "      <Points>\n"
        f'        <DataArray type="Float64" NumberOfComponents="3" '
        f'format="ascii">{_values(points)}</DataArray>\n'
        "      </Points>\n    </Piece>\n  </StructuredGrid>\n</VTKFile>\n"
    )
    path = Path(path)
    path = path if path.suffix == ".vts" else path.with_name(path.name + ".vts")
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return path
