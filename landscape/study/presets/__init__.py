"""The bundled study configs: one TOML file per preset, beside this module (no heavy imports)."""
from __future__ import annotations

from pathlib import Path

from ...errors import LandscapeError

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    """Names of the bundled presets."""
    return sorted(p.stem for p in HERE.glob("*.toml"))


def path(name: str) -> Path:
    """The TOML file of the preset called `name`."""
    found = HERE / f"{name}.toml"
    if not found.is_file():
        raise LandscapeError(f"unknown preset {name!r}; bundled presets: {', '.join(names())}")
    return found
