"""The published values of Singh & Jaggi, "Model Fusion via Optimal Transport" (NeurIPS 2020).

Shipped as `published.toml` (transcribed from the paper and its rebuttal, as printed), and looked
up by experiment and setting.
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
    """Return the transcription's tables, read once."""
    return tomllib.loads(PUBLISHED.read_text())


def settings(kind: str) -> list[str]:
    """The published settings of one experiment kind.

    Args:
        kind: skill-transfer, widths, ensemble or ablation.

    Returns:
        The settings the paper has values for ("mnist-mlpnet", "cifar10-vgg11", ...), sorted.

    Examples:
        >>> settings("ensemble")
        ['cifar10-resnet18', 'cifar10-vgg11', 'cifar100-vgg11']
        >>> settings("batch-size")
        []
    """
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

    Examples:
        >>> table = published("ablation", "mnist-mlpnet")
        >>> table["vanilla_acc"], table["epoch_rows"][0]["ot_acc"]  # Tables S2 and S1
        ('73.84', '87.10')
    """
    tables = _data().get(kind, {})
    if setting not in tables:
        raise LandscapeError(
            f"no published {kind} values for {setting!r}; known: {', '.join(sorted(tables))}"
        )
    return tables[setting]
