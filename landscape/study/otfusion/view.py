"""An OT-fusion study as its store describes it: settings, and every experiment's results gathered
over replicates (mean and standard deviation of each number), for the report and its figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...io.store import StoreReader


def is_ot_study(reader: StoreReader) -> bool:
    """Whether the store holds an OT-fusion study (its description names experiments other than
    batch-size).
    """
    if not reader.has("/study/config"):
        return False
    kinds = json.loads(reader.attrs("/study/config").get("experiments", '["batch-size"]'))
    return kinds != ["batch-size"]


@dataclass(frozen=True)
class Stat:
    """Mean and standard deviation over replicates (sd None for one replicate) of an accuracy in [0,
    1].
    """

    mean: float
    sd: float | None

    def pct(self) -> str:
        """As the report prints an accuracy: a percentage, with ± sd when there are replicates.

        Returns:
            The text, two decimals.
        """
        return self.text(100, 2)

    def text(self, scale: float = 1.0, digits: int = 4) -> str:
        """The mean (± sd when there are replicates) times `scale`, with `digits` decimals.

        Args:
            scale: the factor (100: a percentage of a fraction).
            digits: decimals printed.

        Returns:
            The text.
        """
        if self.sd is None:
            return f"{scale * self.mean:.{digits}f}"
        return f"{scale * self.mean:.{digits}f} ± {scale * self.sd:.{digits}f}"


def stat(values: Any) -> Stat:
    """The Stat of values over replicates (axis 0)."""
    v = np.asarray(values, dtype=float)
    return Stat(float(v.mean(axis=0)), float(v.std(axis=0, ddof=1)) if len(v) > 1 else None)


def stats(values: Any) -> list[Stat]:
    """A Stat per position of arrays stacked over replicates."""
    v = np.asarray(values, dtype=float)
    return [stat(v[:, i]) for i in range(v.shape[1])]


class OTView:
    """Read access to an OT-fusion study's store."""

    def __init__(self, reader: StoreReader, path: Path):
        self.reader, self.path = reader, path
        attrs = reader.attrs("/study/config")
        self.config = json.loads(attrs["config"])
        self.experiments: list[str] = json.loads(attrs["experiments"])
        self.replicates = int(attrs["replicates"])
        self.sizes = json.loads(attrs["data_sizes"])

    def settings(self, kind: str) -> dict:
        """The settings of experiment `kind` as the study ran them."""
        return self.config[kind.replace("-", "_")]

    def groups(self, kind: str, cell: str) -> list[tuple[dict, dict]]:
        """(arrays, attributes) of `/<kind>/<cell>-r<r>` (or `/<kind>/r<r>` for an empty cell) for
        every replicate that finished.
        """
        out = []
        for r in range(self.replicates):
            group = f"/{kind}/{cell}-r{r}" if cell else f"/{kind}/r{r}"
            if self.reader.has(group):
                out.append((self.reader.arrays(group), self.reader.attrs(group)))
        return out
