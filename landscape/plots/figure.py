"""The style every figure is drawn in and the one place figures are written.

Figures are written atomically, in several formats, byte for byte reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from ..choices import FIGURE_FORMATS
from ..errors import check_choice
from ..io.atomic import atomic_path

DPI = 150
# Fixed metadata: no creation date, so that the same numbers give the same file (`make demo`
# regenerates the committed figures byte for byte).
METADATA = {
    "png": {"Software": "landscape (matplotlib)"},
    "pdf": {"CreationDate": None, "Producer": "landscape"},
    "svg": {"Date": None},
}


@contextmanager
def style() -> Iterator[None]:
    """Seaborn's paper style and colour-blind palette, applied inside the block only.

    The user's matplotlib settings are left as they were.

    Yields:
        Nothing: the style holds while the block runs.

    Examples:
        >>> import matplotlib
        >>> with style():
        ...     print(matplotlib.rcParams["svg.hashsalt"])
        landscape
        >>> print(matplotlib.rcParams["svg.hashsalt"])
        None
    """
    import seaborn as sns

    rc = {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("paper", font_scale=1.15),
        "axes.prop_cycle": matplotlib.cycler(color=sns.color_palette("colorblind")),
        "axes.titlesize": 10.5,
        "figure.titlesize": 11.5,
        "legend.fontsize": 8.5,
        "legend.frameon": True,
        "legend.framealpha": 0.9,
        "svg.hashsalt": "landscape",
        "pdf.fonttype": 42,
        "image.cmap": "viridis",
    }
    with matplotlib.rc_context(rc):
        yield


def palette() -> list[tuple[float, float, float]]:
    """The colour-blind palette the style uses (seaborn's), as RGB tuples.

    Returns:
        Ten colours, each (red, green, blue) in [0, 1].

    Examples:
        >>> colours = palette()
        >>> len(colours), [round(c, 3) for c in colours[0]]
        (10, [0.004, 0.451, 0.698])
    """
    import seaborn as sns

    return list(sns.color_palette("colorblind"))


def parse_formats(
    text: str | Sequence[str], allowed: Sequence[str] = FIGURE_FORMATS
) -> tuple[str, ...]:
    """`"png,pdf"` (or a sequence) as a tuple of `allowed` formats, in the order given.

    Formats are trimmed, lower-cased and stripped of a leading dot; repeats are dropped.

    Args:
        text: Comma-separated formats, or a sequence of them.
        allowed: The formats accepted (the figure formats by default).

    Returns:
        The formats, each once.

    Examples:
        >>> parse_formats("PNG, .pdf,png")
        ('png', 'pdf')
        >>> parse_formats("jpg")
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: unknown figure format 'jpg'; choose one of png, pdf, svg
    """
    items = [
        f.strip().lower().lstrip(".") for f in (text.split(",") if isinstance(text, str) else text)
    ]
    formats = tuple(dict.fromkeys(f for f in items if f))
    for f in formats or (text,):
        check_choice(f, allowed, "figure format")
    return formats


def save_figure(
    fig: Figure, path: str | Path, formats: Sequence[str] = ("png",), dpi: int = DPI
) -> list[Path]:
    """Save `fig` as `path` plus each suffix in `formats`, through a temporary file and a rename.

    A figure format suffix already on `path` is dropped. The files carry fixed metadata (no
    creation date), so the same figure gives the same bytes. Call it inside `style()` when the
    figure was drawn there.

    Args:
        fig: The figure.
        path: The file's path, with or without a figure format suffix.
        formats: The formats to write.
        dpi: The resolution of raster formats.

    Returns:
        The files written, in the order of `formats`.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> fig = Figure()
        >>> _ = fig.subplots().plot([0, 1], [1, 0])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     files = save_figure(fig, Path(tmp) / "line.png", formats=("svg", "pdf"))
        ...     print([f.name for f in files], all(f.stat().st_size > 0 for f in files))
        ['line.svg', 'line.pdf'] True
    """
    base, written = Path(path), []
    name = base.stem if base.suffix.lstrip(".") in FIGURE_FORMATS else base.name
    for fmt in formats:
        target = base.parent / f"{name}.{fmt}"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=METADATA.get(fmt))
        written.append(target)
    return written
