"""A study as its HDF5 store describes it, and its numbers per cell.

The store's `/study/...` groups say what every model and pair is (docs/conventions.md, "HDF5
results"); a cell is the replicates of one (init, A batch, B batch) pair.
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
    """All replicates of one pair: same init or not, A's and B's batch sizes.

    Attributes:
        name: The cell's name.
        init: "same" or "diff".
        batches: "corresponding" or "mixed".
        bs_a: A's batch size.
        bs_b: B's batch size.
        pairs: The stored pair descriptions, replicate 0 first.

    Examples:
        >>> run = {"source": "ot", "settings": {"batch_size": 64}}
        >>> cell = Cell("same-32-32", "same", "corresponding", 32, 32, ({"finetuned": [run]},))
        >>> cell.finetunes
        [('ot', 64)]
    """

    name: str
    init: str
    batches: str
    bs_a: int
    bs_b: int
    pairs: tuple[dict, ...]  # the stored pair descriptions, replicate 0 first

    @property
    def finetunes(self) -> list[tuple[str, int]]:
        """(fused model, fine-tuning batch size) of every fine-tuning run of the cell, in order."""
        return [(f["source"], f["settings"]["batch_size"]) for f in self.pairs[0]["finetuned"]]


class StudyView:
    """The study in a result store: its config, its cells, and the numbers of their models.

    Args:
        store: The open result store.
        path: Its path (named in errors).

    Raises:
        LandscapeError: The store holds no study.

    Examples:
        >>> import tempfile
        >>> from landscape.io.store import open_store, write_results
        >>> pair = {"name": "p0", "a": "A0", "b": "B0", "cell": "same-32-32", "init": "same",
        ...         "batches": "corresponding", "bs_a": 32, "bs_b": 32, "replicate": 0}
        >>> groups = {"study/config": ({}, {"config": "{}"}), "study/pairs/p0": ({}, pair),
        ...           "models/A0/metrics": ({}, {"test_acc": 0.5, "test_n": 100}),
        ...           "barriers/A0~B0/ot": ({}, {"barrier_train": 0.25})}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_results(Path(tmp) / "study.h5", groups)
        ...     with open_store(Path(tmp) / "study.h5") as store:
        ...         view = StudyView(store, Path(tmp) / "study.h5")
        ...         cell = view.cells["same-32-32"]
        ...         print(view.value(cell.pairs[0], "a", "test_acc"))  # percent, binomial s.e.
        ...         print(view.cell_barrier(cell, "ot"), view.values(cell, "b", "trace"))
        (50.0, 5.0)
        Estimate(values=(0.25,), own_se=None) [nan]
    """

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
        """The cells with `init` and `batches`.

        Args:
            init: "same" or "diff"; None for any.
            batches: "corresponding" or "mixed"; None for any.

        Returns:
            The cells, corresponding batch sizes first, then same init first, then by A's and B's
            batch size.
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
        """A scalar attribute as a float.

        Args:
            group: The group's name.
            key: The attribute's name.

        Returns:
            The value, or None where the group or attribute is missing or not a number.
        """
        if not self.store.has(group):
            return None
        value = self.store.attrs(group).get(key)
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None

    def arrays(self, group: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """All datasets and attributes of `group`.

        Args:
            group: The group's name.

        Returns:
            The arrays and attributes, or None when the group is missing.
        """
        if not self.store.has(group):
            return None
        return self.store.arrays(group), self.store.attrs(group)

    # ---- one pair --------------------------------------------------------------------------------
    @staticmethod
    def model_name(pair: dict, row: str) -> str:
        """The stored model behind one row of a pair.

        Args:
            pair: The stored pair description.
            row: a, b, vanilla, aligned, ot or a fine-tuned model's suffix such as ot-ft32.

        Returns:
            The model's stored name.
        """
        return {"a": pair["a"], "b": pair["b"]}.get(row, f"{pair['name']}.{row}")

    def value(self, pair: dict, row: str, metric: str) -> tuple[float | None, float | None]:
        """The value of `metric` for one row of a pair, with its own standard error.

        Args:
            pair: The stored pair description.
            row: The row (`model_name`), or "ensemble" (test accuracy only).
            metric: "test_acc" (in percent), "top_eig" or "trace".

        Returns:
            The value and its own standard error (binomial for an accuracy, Hutchinson's for a
            trace), each None where not stored.
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
        """||∇L|| / ||θ|| of a row's model where its curvature was measured.

        Args:
            pair: The stored pair description.
            row: The row (`model_name`).

        Returns:
            The ratio, or None where not recorded.
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
        """Test accuracy in percent and its binomial standard error over the test examples.

        Returns:
            The accuracy and its standard error, each None where not known.
        """
        acc, n = self.attr(group, "test_acc"), self.attr(group, "test_n") or self.sizes.get("test")
        if acc is None:
            return None, None
        se = 100 * math.sqrt(acc * (1 - acc) / n) if n else None
        return 100 * acc, se

    def barrier(
        self, pair: dict, align: str, split: str = "train", quantity: str = "loss"
    ) -> float | None:
        """The LMC barrier of a pair on `split`, pre or post alignment.

        Args:
            pair: The stored pair description.
            align: "none" (pre alignment) or "ot" (post).
            split: "train" or "test".
            quantity: "loss", or "error" (in percentage points).

        Returns:
            The barrier, or None where not stored (error barriers of results stored before them).
        """
        if quantity == "error":
            value = self.attr(
                f"/barriers/{pair['a']}~{pair['b']}/{align}", f"error_barrier_{split}"
            )
            return None if value is None else 100 * value
        return self.attr(f"/barriers/{pair['a']}~{pair['b']}/{align}", f"barrier_{split}")

    # ---- one cell --------------------------------------------------------------------------------
    def cell_value(self, cell: Cell, row: str, metric: str) -> Estimate | None:
        """A row's `metric` over the cell's replicates.

        Args:
            cell: The cell.
            row: The row (`value`).
            metric: "test_acc", "top_eig" or "trace".

        Returns:
            The estimate (with the measurement's own s.e. for one replicate), or None.
        """
        values = [self.value(p, row, metric) for p in cell.pairs]
        return estimate([v for v, _ in values], values[0][1] if len(values) == 1 else None)

    def cell_stationarity(self, cell: Cell, row: str) -> tuple[Estimate | None, int]:
        """A row's ||∇L|| / ||θ|| over the cell's replicates.

        Args:
            cell: The cell.
            row: The row (`model_name`).

        Returns:
            The estimate (or None), and how many replicates lie above FAR_FROM_STATIONARY.
        """
        values = [self.stationarity(p, row) for p in cell.pairs]
        return estimate(values), sum(
            1 for v in values if v is not None and not v <= FAR_FROM_STATIONARY
        )

    def cell_barrier(
        self, cell: Cell, align: str, split: str = "train", quantity: str = "loss"
    ) -> Estimate | None:
        """A cell's barrier (of the loss or the error) over its replicates.

        Args:
            cell: The cell.
            align: "none" or "ot".
            split: "train" or "test".
            quantity: "loss" or "error".

        Returns:
            The estimate, or None where no replicate has it.
        """
        return estimate([self.barrier(p, align, split, quantity) for p in cell.pairs])

    def values(self, cell: Cell, row: str, metric: str) -> list[float]:
        """The replicates' values of a row.

        Args:
            cell: The cell.
            row: The row (`value`).
            metric: "test_acc", "top_eig" or "trace".

        Returns:
            The values in replicate order, missing ones as NaN.
        """
        out = [self.value(p, row, metric)[0] for p in cell.pairs]
        return [math.nan if v is None else v for v in out]

    def barriers(self, cell: Cell, align: str, split: str = "train") -> list[float]:
        """The replicates' loss barriers.

        Args:
            cell: The cell.
            align: "none" or "ot".
            split: "train" or "test".

        Returns:
            The barriers in replicate order, missing ones as NaN.
        """
        out = [self.barrier(p, align, split) for p in cell.pairs]
        return [math.nan if v is None else v for v in out]

    @staticmethod
    def ft_row(source: str, batch_size: int) -> str:
        """The row key of a fine-tuned model (the suffix of its stored name).

        Args:
            source: The fused model fine-tuned ("vanilla" or "ot").
            batch_size: The fine-tuning batch size.

        Returns:
            The key, e.g. "ot-ft32".
        """
        return f"{source}-ft{batch_size}"
