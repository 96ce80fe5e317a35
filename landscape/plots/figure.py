"""Writing a matplotlib figure atomically (the one place every plot goes through)."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ..io.atomic import atomic_path


def save_figure(fig: Figure, path: str | Path, dpi: int = 130) -> Path:
    """Save `fig` to `path` (format from the suffix) through a temporary file and a rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    return path
