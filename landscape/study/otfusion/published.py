"""The published values of Singh & Jaggi, "Model Fusion via Optimal Transport" (NeurIPS 2020),
shipped as `published.toml` (transcribed from the paper and its rebuttal, as printed), and their
look-up by experiment and setting.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from ...errors import LandscapeError

PUBLISHED = Path(__file__).with_name("published.toml")
CITATION = 'Singh & Jaggi, "Model Fusion via Optimal Transport", NeurIPS 2020'


@cache
def _data() -> dict[str, Any]:
    return tomllib.loads(PUBLISHED.read_text())


def settings(kind: str) -> list[str]:
    """The published settings of experiment `kind` ("mnist-mlpnet", "cifar10-vgg11", ...)."""
    return sorted(_data().get(kind, {}))


def published(kind: str, setting: str) -> dict[str, Any]:
    """The published values of experiment `kind` in `setting`.

    Args:
        kind: skill-transfer, widths, ensemble or ablation.
        setting: one of `settings(kind)`.

    Returns:
        The table: `setting` (in words), `source` (where in the paper), and its values as printed.

    Raises:
        LandscapeError: for a setting the paper has no values for.
    """
    tables = _data().get(kind, {})
    if setting not in tables:
        raise LandscapeError(
            f"no published {kind} values for {setting!r}; known: {', '.join(sorted(tables))}"
        )
    return tables[setting]
