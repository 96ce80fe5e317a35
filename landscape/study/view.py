"""A study as its HDF5 store describes it (docs/conventions.md, "HDF5 results": `/study/...` says
what every model and pair is), and its numbers per cell: the replicates of one (init, A batch, B
batch) pair.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..curvature.stationarity import FAR_FROM_STATIONARY
from ..errors import LandscapeError
from ..io.store import StoreReader
from .stats import Estimate, estimate

# The rows of the seed study's model tables, and which model of a pair each one is.
ROWS = [
    ("Model A", "a"),
    ("Model B", "b"),
    ("Vanilla avg", "vanilla"),
    ("A aligned to B", "aligned"),
    ("Pred. avg", "ensemble"),
    ("OTFusion", "ot"),
]
FT_LABELS = {"vanilla": "Vanilla avg FT", "ot": "OTFusion FT"}
METRICS = ("test_acc", "top_eig", "trace")


@dataclass(frozen=True)
class Cell:
    """All replicates of one pair: same init or not, A's and B's batch sizes."""

    name: str
    init: str
    batches: str
    bs_a: int
    bs_b: int
    pairs: tuple[dict, ...]  # the stored pair descriptions, replicate 0 first

    @property
    def finetunes(self) -> list[tuple[str, int]]:
        """(fused model, fine-tuning batch size) of every fine-tuning run of the cell, in config
        order.
        """
        return [(f["source"], f["settings"]["batch_size"]) for f in self.pairs[0]["finetuned"]]


class StudyView:
    """The study in a result store: its config, its cells, and the numbers of their models."""

    def __init__(self, store: StoreReader, path: Path):
        if not store.has("/study/pairs"):
            raise LandscapeError(f"{path}: holds no study (run `landscape study` first)")
        self.store, self.path = store, path
        head = store.attrs("/study/config")
        self.config = json.loads(head["config"])
        self.replicates = int(head.get("replicates", 1))
        self.seed_shift = int(head.get("seed_shift", 0))
        compare = head.get("compare")
        self.compare = None if compare in (None, "None") else str(compare)
        self.sizes = json.loads(head.get("data_sizes", "{}"))
        self.models = {
            name: store.attrs(f"/study/models/{name}") for name in store.children("/study/models")
        }
        cells: dict[str, list[dict]] = defaultdict(list)
        for name in store.children("/study/pairs"):
            pair = store.attrs(f"/study/pairs/{name}")
            pair["finetuned"] = json.loads(pair.get("finetuned", "[]"))
            cells[pair["cell"]].append(pair)
        self.cells = {
            name: Cell(
                name,
                ps[0]["init"],
                ps[0]["batches"],
                int(ps[0]["bs_a"]),
                int(ps[0]["bs_b"]),
                tuple(sorted(ps, key=lambda p: int(p["replicate"]))),
            )
            for name, ps in cells.items()
        }

    def cells_of(self, init: str | None = None, batches: str | None = None) -> list[Cell]:
        """The cells with `init` and `batches` (None: any): equal batch sizes first, then same init
        first, then by A's and B's batch size.
        """
        found = [
            c
            for c in self.cells.values()
            if init in (None, c.init) and batches in (None, c.batches)
        ]
        return sorted(
            found, key=lambda c: (c.batches != "corresponding", c.init != "same", c.bs_a, c.bs_b)
        )

    def attr(self, group: str, key: str) -> float | None:
        """A scalar attribute, or None where the group or attribute is missing."""
        if not self.store.has(group):
            return None
        value = self.store.attrs(group).get(key)
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None

    def arrays(self, group: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """All datasets and attributes of `group`, or None."""
        if not self.store.has(group):
            return None
        return self.store.arrays(group), self.store.attrs(group)

    # ---- one pair
    # ----------------------------------------------------------------------------------------------
    @staticmethod
    def model_name(pair: dict, row: str) -> str:
        """The stored model behind row `row` of `pair`: a, b, vanilla, aligned, ot or a fine-tuned
        model's suffix such as ot-ft32.
        """
        return {"a": pair["a"], "b": pair["b"]}.get(row, f"{pair['name']}.{row}")

    def value(self, pair: dict, row: str, metric: str) -> tuple[float | None, float | None]:
        """(value, its own standard error or None) of `metric` (test_acc in %, top_eig, trace) for
        one row.
        """
        if row == "ensemble":
            group = f"/pairs/{pair['name']}/ensemble"
            return self._accuracy(group) if metric == "test_acc" else (None, None)
        name = self.model_name(pair, row)
        if metric == "test_acc":
            return self._accuracy(f"/models/{name}/metrics")
        if metric == "trace":
            group = f"/models/{name}/trace"
            return self.attr(group, "trace"), self.attr(group, "stderr")
        eig = self.arrays(f"/models/{name}/eigenvalues")
        top = float(np.max(eig[0]["eigenvalues"])) if eig and "eigenvalues" in eig[0] else None
        return top, None

    def stationarity(self, pair: dict, row: str) -> float | None:
        """||∇L|| / ||θ|| of a row's model where its curvature was measured (None where not
        recorded).
        """
        if row == "ensemble":
            return None
        name = self.model_name(pair, row)
        for what in ("trace", "eigenvalues"):
            value = self.attr(f"/models/{name}/{what}", "point_rel_grad_norm")
            if value is not None:
                return value
        return None

    def _accuracy(self, group: str) -> tuple[float | None, float | None]:
        """Test accuracy in percent and its binomial standard error over the test examples."""
        acc, n = self.attr(group, "test_acc"), self.attr(group, "test_n") or self.sizes.get("test")
        if acc is None:
            return None, None
        se = 100 * math.sqrt(acc * (1 - acc) / n) if n else None
        return 100 * acc, se

    def barrier(
        self, pair: dict, align: str, split: str = "train", quantity: str = "loss"
    ) -> float | None:
        """The LMC barrier of a pair on `split`, pre (`none`) or post (`ot`) alignment: of the loss,
        or of the error (`quantity="error"`, in percentage points; None for results stored before
        error barriers).
        """
        if quantity == "error":
            value = self.attr(
                f"/barriers/{pair['a']}~{pair['b']}/{align}", f"error_barrier_{split}"
            )
            return None if value is None else 100 * value
        return self.attr(f"/barriers/{pair['a']}~{pair['b']}/{align}", f"barrier_{split}")

    # ---- one cell
    # ----------------------------------------------------------------------------------------------
    def cell_value(self, cell: Cell, row: str, metric: str) -> Estimate | None:
        """A row's `metric` over the cell's replicates (the measurement's own s.e. with one
        replicate).
        """
        values = [self.value(p, row, metric) for p in cell.pairs]
        return estimate([v for v, _ in values], values[0][1] if len(values) == 1 else None)

    def cell_stationarity(self, cell: Cell, row: str) -> tuple[Estimate | None, int]:
        """A row's ||∇L|| / ||θ|| over the cell's replicates, and how many replicates lie above
        FAR_FROM_STATIONARY.
        """
        values = [self.stationarity(p, row) for p in cell.pairs]
        return estimate(values), sum(
            1 for v in values if v is not None and not v <= FAR_FROM_STATIONARY
        )

    def cell_barrier(
        self, cell: Cell, align: str, split: str = "train", quantity: str = "loss"
    ) -> Estimate | None:
        """A cell's barrier (of the loss or the error) over its replicates."""
        return estimate([self.barrier(p, align, split, quantity) for p in cell.pairs])

    def values(self, cell: Cell, row: str, metric: str) -> list[float]:
        """The replicates' values of a row (missing ones as NaN, in replicate order)."""
        out = [self.value(p, row, metric)[0] for p in cell.pairs]
        return [math.nan if v is None else v for v in out]

    def barriers(self, cell: Cell, align: str, split: str = "train") -> list[float]:
        """The replicates' barriers (missing ones as NaN, in replicate order)."""
        out = [self.barrier(p, align, split) for p in cell.pairs]
        return [math.nan if v is None else v for v in out]

    @staticmethod
    def ft_row(source: str, batch_size: int) -> str:
        """The row key of a fine-tuned model (the suffix of its stored name)."""
        return f"{source}-ft{batch_size}"
