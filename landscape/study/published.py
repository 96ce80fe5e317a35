"""The seed study's published numbers, and the look-ups that put them beside a study's own.

The numbers are Tables 1-14 of Cabodi et al., "Exploring the Impact of Batch Size on Model Fusion",
shipped as `published.toml` (hand-checked against the authors' PDF).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PUBLISHED = Path(__file__).with_name("published.toml")
# [study] compare: model/dataset
COMPARABLE = (
    "resnet18/cifar10",
    "resnet18/mnist",
    "vgg11/cifar10",
)
CITATION = (
    "Cabodi, Rambelli, Stella, Udris: Exploring the Impact of Batch Size on Model Fusion (ETH "
    "Zurich, 2024)"
)


@dataclass(frozen=True)
class SeedTable:
    """One published results table: its number, caption, what it tabulates and its rows as printed.

    Attributes:
        number: The table's number in the paper.
        caption: Its caption.
        kind: "barrier" or "model".
        init: "same" or "diff" for model tables; None for barrier tables (their rows carry it).
        batches: "corresponding" or "mixed".
        rows: The rows, each with its printed values under `printed`.

    Examples:
        >>> row = {"batch_size": 32, "init": "same", "printed": {"pre": "2.1462", "post": "1.6953"}}
        >>> table = SeedTable(9, "Barriers", "barrier", None, "corresponding", (row,))
        >>> table.barrier(32, 32, "same", "post"), table.barrier(64, 64, "same", "post")
        ('1.6953', None)
    """

    number: int
    caption: str
    kind: str  # barrier | model
    init: str | None  # same | diff for model tables; barrier rows carry their own init
    batches: str  # corresponding | mixed
    rows: tuple[dict[str, Any], ...]

    def barrier(self, a_batch: int, b_batch: int, init: str, which: str) -> str | None:
        """The printed pre or post barrier of a row.

        Args:
            a_batch: A's batch size.
            b_batch: B's batch size.
            init: "same" or "diff".
            which: "pre" or "post" (alignment).

        Returns:
            The value as printed, or None when the table has no such row.
        """
        for row in self.rows:
            if (
                row.get("a_batch", row.get("batch_size")),
                row.get("b_batch", row.get("batch_size")),
                row["init"],
            ) == (a_batch, b_batch, init):
                return row["printed"].get(which)
        return None

    def model(
        self, a_batch: int, b_batch: int, label: str, metric: str, ft_batch: int | None = None
    ) -> str | None:
        """The printed value of `metric` in row `label` of pair (A, B).

        Args:
            a_batch: A's batch size.
            b_batch: B's batch size.
            label: The row's label as printed ("Model A", "OTFusion", ...).
            metric: "test_acc", "top_eig" or "trace".
            ft_batch: The fine-tuning batch size that tells fine-tuned rows apart.

        Returns:
            The value as printed, or None when the table has no such row or value.
        """
        for row in self.rows:
            if (row["a_batch"], row["b_batch"], row["row"]) != (a_batch, b_batch, label):
                continue
            if ft_batch is not None and row.get("ft_batch_size", ft_batch) != ft_batch:
                continue
            return row["printed"].get(metric)
        return None


@cache
def _data() -> dict[str, Any]:
    """The parsed `published.toml`, read once.

    Returns:
        Its tables and settings.
    """
    return tomllib.loads(PUBLISHED.read_text())


def seed_tables(compare: str) -> list[SeedTable]:
    """The results tables of the seed study for one model and data set, in the paper's order.

    Args:
        compare: "model/dataset", one of `COMPARABLE`.

    Returns:
        The tables (none for a combination the paper does not report).

    Examples:
        >>> [(t.number, t.kind) for t in seed_tables("vgg11/cifar10")]
        [(9, 'barrier'), (13, 'model'), (14, 'model')]
    """
    model, dataset = compare.split("/")
    tables = []
    for key, t in _data().items():
        if key.startswith("table") and t.get("model") == model and t.get("dataset") == dataset:
            tables.append(
                SeedTable(
                    int(key[5:]),
                    t["caption"],
                    t["kind"],
                    t.get("scenario"),
                    t["batches"],
                    tuple(t["rows"]),
                )
            )
    return sorted(tables, key=lambda t: t.number)


def find(
    tables: list[SeedTable], kind: str, batches: str, init: str | None = None
) -> SeedTable | None:
    """The seed table that tabulates `kind` for `batches` (and `init` for model tables).

    Args:
        tables: The tables to look in (`seed_tables`).
        kind: "barrier" or "model".
        batches: "corresponding" or "mixed".
        init: "same" or "diff" (model tables only).

    Returns:
        The first such table, or None.

    Examples:
        >>> table = find(seed_tables("vgg11/cifar10"), "model", "corresponding", "same")
        >>> table.number, table.model(32, 32, "Model A", "test_acc")
        (13, '85.13')
    """
    return next(
        (
            t
            for t in tables
            if t.kind == kind and t.batches == batches and (kind == "barrier" or t.init == init)
        ),
        None,
    )


def settings() -> dict[str, Any]:
    """The published settings: Tables 5 and 6 and everything else the text states.

    Returns:
        The settings by table (`table5`, `table6`) and `other`.

    Examples:
        >>> sorted(settings())
        ['other', 'table5', 'table6']
    """
    return _data()["settings"]
