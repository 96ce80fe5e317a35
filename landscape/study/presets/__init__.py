"""The bundled study configs: one TOML file per preset, beside this module (no heavy imports)."""

from __future__ import annotations

from pathlib import Path

from ...errors import check_choice

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    """Names of the bundled presets.

    Returns:
        The names, sorted.

    Examples:
        >>> "quick" in names() and "cifar10-resnet18" in names()
        True
    """
    return sorted(p.stem for p in HERE.glob("*.toml"))


def path(name: str) -> Path:
    """The TOML file of the preset called `name`.

    Args:
        name: one of `names()`.

    Returns:
        The file's path.

    Examples:
        >>> path("quick").name
        'quick.toml'
    """
    return HERE / f"{check_choice(name, names(), 'preset')}.toml"
