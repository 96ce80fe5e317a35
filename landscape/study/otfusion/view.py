"""An OT-fusion study as its store describes it, for the report and its figures.

Its settings, and every experiment's results gathered over replicates (mean and standard deviation
of each number).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...io.store import StoreReader


def is_ot_study(reader: StoreReader) -> bool:
    """Whether the store holds an OT-fusion study.

    Args:
        reader: the open store.

    Returns:
        True when its description (`/study/config`) names experiments other than batch-size.

    Examples:
        >>> import tempfile
        >>> from landscape.io.store import open_store, write_result
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "study.h5"
        ...     write_result(path, "/study/config", {}, {"experiments": '["ablation"]'})
        ...     with open_store(path) as reader:
        ...         is_ot_study(reader)
        True
    """
    if not reader.has("/study/config"):
        return False
    kinds = json.loads(reader.attrs("/study/config").get("experiments", '["batch-size"]'))
    return kinds != ["batch-size"]


@dataclass(frozen=True)
class Stat:
    """Mean and standard deviation over replicates of a number (sd None for one replicate).

    Examples:
        >>> Stat(0.9, 0.01).pct(), Stat(0.12345, None).text()
        ('90.00 ± 1.00', '0.1235')
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
    """The mean and sample standard deviation of values over replicates.

    Args:
        values: one value per replicate (axis 0).

    Returns:
        Their Stat (sd None for one value).

    Examples:
        >>> stat([0.8, 0.9, 1.0]).pct()
        '90.00 ± 10.00'
    """
    v = np.asarray(values, dtype=float)
    return Stat(float(v.mean(axis=0)), float(v.std(axis=0, ddof=1)) if len(v) > 1 else None)


def stats(values: Any) -> list[Stat]:
    """A Stat per position of arrays stacked over replicates.

    Args:
        values: one array per replicate, all of one length.

    Returns:
        The Stat of each position.

    Examples:
        >>> [s.pct() for s in stats([[0.5, 1.0], [0.7, 1.0]])]
        ['60.00 ± 14.14', '100.00 ± 0.00']
    """
    v = np.asarray(values, dtype=float)
    return [stat(v[:, i]) for i in range(v.shape[1])]


class OTView:
    """Read access to an OT-fusion study's store.

    Args:
        reader: the open store, holding the study's description under `/study/config`.
        path: the store's file (the report links to it).

    Examples:
        >>> import tempfile
        >>> from landscape.io.store import open_store, write_result
        >>> described = {
        ...     "config": '{"ablation": {"epochs": [1, 2]}}',
        ...     "experiments": '["ablation"]',
        ...     "replicates": 2,
        ...     "data_sizes": '{"test": 359}',
        ... }
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "study.h5"
        ...     write_result(path, "/study/config", {}, described)
        ...     write_result(path, "/ablation/epochs-r1", {"epochs": [1, 2]}, {"test_n": 359})
        ...     with open_store(path) as reader:
        ...         view = OTView(reader, path)
        ...         runs = view.groups("ablation", "epochs")  # replicate 0 did not finish
        ...         view.settings("ablation"), len(runs), runs[0][0]["epochs"].tolist()
        ({'epochs': [1, 2]}, 1, [1, 2])
    """

    def __init__(self, reader: StoreReader, path: Path):
        self.reader, self.path = reader, path
        attrs = reader.attrs("/study/config")
        self.config = json.loads(attrs["config"])
        self.experiments: list[str] = json.loads(attrs["experiments"])
        self.replicates = int(attrs["replicates"])
        self.sizes = json.loads(attrs["data_sizes"])

    def settings(self, kind: str) -> dict:
        """The settings of one experiment kind as the study ran them.

        Args:
            kind: the experiment kind ("skill-transfer", "ablation", ...).

        Returns:
            Its section of the study's config.
        """
        return self.config[kind.replace("-", "_")]

    def groups(self, kind: str, cell: str) -> list[tuple[dict, dict]]:
        """The stored results of one cell of an experiment, a pair per replicate that finished.

        Args:
            kind: the experiment kind.
            cell: the group's name before `-r<r>` ("diff", "k2", "epochs", ...); empty for
                `/<kind>/r<r>`.

        Returns:
            (arrays, attributes) of `/<kind>/<cell>-r<r>` for every replicate r stored.
        """
        out = []
        for r in range(self.replicates):
            group = f"/{kind}/{cell}-r{r}" if cell else f"/{kind}/r{r}"
            if self.reader.has(group):
                out.append((self.reader.arrays(group), self.reader.attrs(group)))
        return out
