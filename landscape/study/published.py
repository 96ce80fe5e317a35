"""The seed study's published numbers (Cabodi et al., "Exploring the Impact of Batch Size on Model
Fusion", Tables 1-14), shipped as `published.toml` (hand-checked against the authors' PDF), and the
look-ups that put them beside a study's own numbers in the report.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

PUBLISHED = Path(__file__).with_name("published.toml")
COMPARABLE = (
    "resnet18/cifar10",
    "resnet18/mnist",
    "vgg11/cifar10",
)  # [study] compare: model/dataset
CITATION = (
    "Cabodi, Rambelli, Stella, Udris: Exploring the Impact of Batch Size on Model Fusion (ETH "
    "Zurich, 2024)"
)


@dataclass(frozen=True)
class SeedTable:
    """One published results table: its number, caption, what it tabulates and its rows as
    printed.
    """

    number: int
    caption: str
    kind: str  # barrier | model
    init: str | None  # same | diff for model tables; barrier rows carry their own init
    batches: str  # corresponding | mixed
    rows: tuple[dict[str, Any], ...]

    def barrier(self, a_batch: int, b_batch: int, init: str, which: str) -> str | None:
        """The printed pre or post barrier of a row, or None."""
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
        """The printed value of `metric` (test_acc, top_eig, trace) in row `label` of pair (A, B),
        or None; fine-tuned rows are told apart by their fine-tuning batch size.
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
    return tomllib.loads(PUBLISHED.read_text())


def seed_tables(compare: str) -> list[SeedTable]:
    """The results tables of the seed study for `compare` ("model/dataset"), in the paper's
    order.
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
    """The seed table that tabulates `kind` (barrier | model) for `batches` (and `init` for model
    tables).
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
    """The published settings: Tables 5 and 6 and everything else the text states."""
    return _data()["settings"]
