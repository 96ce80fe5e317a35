"""The bundled study configs: one TOML file per preset, beside this module (no heavy imports)."""

from __future__ import annotations

from pathlib import Path

from ...errors import check_choice

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    """Names of the bundled presets."""
    return sorted(p.stem for p in HERE.glob("*.toml"))


def path(name: str) -> Path:
    """The TOML file of the preset called `name`."""
    return HERE / f"{check_choice(name, names(), 'preset')}.toml"
