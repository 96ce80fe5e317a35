"""The report's "What the numbers say": the seed study's claims tested on the study's own numbers.

Each claim is one sentence that says whether the effect exceeds its uncertainty (two-sided tests:
least squares against log2 of the batch size for trends, paired t-tests for two numbers of the same
pairs, Welch's t-test otherwise; p adjusted by Holm over every test of the report, and no verdict
from fewer than MIN_N values). Nothing here is written by hand: the sentences follow from the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .stats import MIN_N, Test, holm, paired, trend, unpaired
from .view import Cell, StudyView

INIT_NAME = {"same": "same initialisation", "diff": "different initialisation"}


def _direction_of(test: Test, up: str, down: str) -> str:
    """`up` for a positive effect, else `down`.

    Returns:
        One of the two words.
    """
    return up if test.effect > 0 else down


@dataclass(frozen=True)
class _Verdict:
    """One claim: its test (None: too few values), what it says, the words for each sign, a unit."""

    test: Test | None
    what: str
    up: str
    down: str
    unit: str = ""

    def sentence(self, test: Test | None) -> str:
        """The claim's sentence, given its test (Holm-adjusted).

        Returns:
            The sentence: not testable, exact, no verdict, exceeds its uncertainty, or within the
            noise.
        """
        if test is None:
            return f"{self.what}: not testable (too few values)."
        if test.exact:
            exact = (
                "none, exactly zero"
                if test.effect == 0
                else f"{_direction_of(test, self.up, self.down)}, {test.effect:+.3g}"
            )
            return f"{self.what}: {exact} ({test.n} values without any spread)."
        direction = _direction_of(test, self.up, self.down)
        if not test.testable:
            return (
                f"{self.what}: {direction}, {test.text(self.unit)}: no verdict from fewer than "
                f"{MIN_N} values (the t-test would rest on under 4 degrees of freedom)."
            )
        if test.significant:
            return f"{self.what}: **{direction}**, {test.text(self.unit)}: exceeds its uncertainty."
        return f"{self.what}: {direction}, {test.text(self.unit)}, within the noise."


def _over(
    cells: list[Cell], values: Callable[[Cell], list[float]]
) -> tuple[list[int], list[float]]:
    """(batch size, value) of every replicate of every cell, flattened for a trend.

    Returns:
        The batch sizes and the values.
    """
    xs, ys = [], []
    for cell in cells:
        for v in values(cell):
            xs.append(cell.bs_a)
            ys.append(v)
    return xs, ys


def _flat(cells: list[Cell], values: Callable[[Cell], list[float]]) -> list[float]:
    """The values of every replicate of every cell, in order.

    Returns:
        The values.
    """
    return [v for cell in cells for v in values(cell)]


def findings(view: StudyView) -> list[str]:
    """The sentences, in the seed study's order, their p-values adjusted together by Holm's method.

    The order: barriers, alignment, sharpness, fusion, fine-tuning, mixed batch sizes (`stats.holm`
    adjusts the p-values).

    Args:
        view: The study store, read.

    Returns:
        One Markdown sentence per claim.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from landscape.io.store import open_store, write_results
        >>> def cell(name, bs, pre, post):  # a same-init pair and its train-loss barriers
        ...     pair = {"name": name, "a": name + "A", "b": name + "B", "cell": name,
        ...             "init": "same", "batches": "corresponding", "bs_a": bs, "bs_b": bs,
        ...             "replicate": 0}
        ...     return {f"study/pairs/{name}": ({}, pair),
        ...             f"barriers/{name}A~{name}B/none": ({}, {"barrier_train": pre}),
        ...             f"barriers/{name}A~{name}B/ot": ({}, {"barrier_train": post})}
        >>> groups = {"study/config": ({}, {"config": "{}"}), **cell("bs32", 32, 0.5, 0.1),
        ...           **cell("bs128", 128, 0.9, 0.2)}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_results(Path(tmp) / "s.h5", groups)
        ...     with open_store(Path(tmp) / "s.h5") as store:
        ...         view = StudyView(store, Path(tmp) / "s.h5")
        ...         said = findings(view)
        >>> print(said[2])  # doctest: +NORMALIZE_WHITESPACE
        OT alignment and the train-loss barrier, pre minus post (same initialisation, all pairs):
        alignment lowers the barrier, +0.55, 95% CI [-1.36, +2.46] (p = 0.170, Holm-adjusted
        p = 0.170, n = 2): no verdict from fewer than 6 values (the t-test would rest on under 4
        degrees of freedom).
    """
    claims = _claims(view)
    return [c.sentence(t) for c, t in zip(claims, holm([c.test for c in claims]))]


def family_size(view: StudyView) -> int:
    """How many tests the report's Holm correction is over.

    Args:
        view: The study store, read.

    Returns:
        The number of claims with a test that has a spread.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from landscape.io.store import open_store, write_results
        >>> def cell(name, bs, pre, post):  # a same-init pair and its train-loss barriers
        ...     pair = {"name": name, "a": name + "A", "b": name + "B", "cell": name,
        ...             "init": "same", "batches": "corresponding", "bs_a": bs, "bs_b": bs,
        ...             "replicate": 0}
        ...     return {f"study/pairs/{name}": ({}, pair),
        ...             f"barriers/{name}A~{name}B/none": ({}, {"barrier_train": pre}),
        ...             f"barriers/{name}A~{name}B/ot": ({}, {"barrier_train": post})}
        >>> groups = {"study/config": ({}, {"config": "{}"}), **cell("bs32", 32, 0.5, 0.1),
        ...           **cell("bs128", 128, 0.9, 0.2)}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_results(Path(tmp) / "s.h5", groups)
        ...     with open_store(Path(tmp) / "s.h5") as store:
        ...         view = StudyView(store, Path(tmp) / "s.h5")
        ...         print(family_size(view))  # pre minus post barrier, over the two pairs
        1
    """
    return sum(1 for c in _claims(view) if c.test is not None and not c.test.exact)


def _claims(view: StudyView) -> list[_Verdict]:
    """The claims whose numbers the store has, each with its test.

    Returns:
        The claims, in the report's order.
    """
    out: list[_Verdict] = []
    per = " per doubling of the batch size"
    for init in ("same", "diff"):
        cells = view.cells_of(init, "corresponding")
        if len({c.bs_a for c in cells}) < 2:
            continue
        for align, when in (("none", "before"), ("ot", "after")):
            test = trend(*_over(cells, lambda c, a=align: view.barriers(c, a)))
            out.append(
                _Verdict(
                    test,
                    f"Train-loss barrier {when} alignment against the batch size "
                    f"({INIT_NAME[init]})",
                    "grows with the batch",
                    "shrinks with the batch",
                    per,
                )
            )
    for init in ("same", "diff"):
        cells = view.cells_of(init)
        if cells:
            test = paired(
                _flat(cells, lambda c: view.barriers(c, "none")),
                _flat(cells, lambda c: view.barriers(c, "ot")),
            )
            out.append(
                _Verdict(
                    test,
                    f"OT alignment and the train-loss barrier, pre minus post ({INIT_NAME[init]}, "
                    "all pairs)",
                    "alignment lowers the barrier",
                    "alignment raises the barrier",
                )
            )
    parents = view.cells_of(batches="corresponding")
    if len({c.bs_a for c in parents}) >= 2:
        for metric, what in (("top_eig", "top eigenvalue"), ("trace", "trace")):
            xs, ys = _parent_values(view, parents, metric)
            out.append(
                _Verdict(
                    trend(xs, ys),
                    f"Parents' {what} against the batch size",
                    "sharper with larger batches",
                    "flatter with larger batches",
                    per,
                )
            )
    for init in ("same", "diff"):
        cells = view.cells_of(init)
        test = paired(
            _flat(cells, lambda c: view.values(c, "ot", "test_acc")),
            _flat(cells, lambda c: view.values(c, "vanilla", "test_acc")),
        )
        if cells:
            out.append(
                _Verdict(
                    test,
                    f"Test accuracy of the OT fusion minus the vanilla average ({INIT_NAME[init]})",
                    "OT fusion is more accurate",
                    "vanilla averaging is more accurate",
                    " points",
                )
            )
    out += _finetuned(view)
    out += _mixed(view)
    return out


def _parent_values(
    view: StudyView, cells: list[Cell], metric: str
) -> tuple[list[int], list[float]]:
    """Every distinct parent's value once (a parent can belong to several pairs).

    Returns:
        The parents' batch sizes and values.
    """
    seen: dict[str, tuple[int, float]] = {}
    for cell in cells:
        for pair in cell.pairs:
            for row in ("a", "b"):
                value = view.value(pair, row, metric)[0]
                if value is not None:
                    seen[pair[row]] = (cell.bs_a, value)
    return [x for x, _ in seen.values()], [y for _, y in seen.values()]


def _ft_at_b(view: StudyView, cell: Cell, metric: str) -> list[float]:
    """The replicates' values of the OT fusion fine-tuned at B's batch size.

    Returns:
        The values; empty when the cell has no such run.
    """
    return (
        view.values(cell, StudyView.ft_row("ot", cell.bs_b), metric)
        if ("ot", cell.bs_b) in cell.finetunes
        else []
    )


def _finetuned(view: StudyView) -> list[_Verdict]:
    """The claims on the fine-tuned OT fusions of different-init pairs.

    Returns:
        The claims: sharpness trends and the accuracy against the better parent.
    """
    out = []
    cells = [c for c in view.cells_of("diff", "corresponding") if ("ot", c.bs_b) in c.finetunes]
    if len({c.bs_a for c in cells}) >= 2:
        for metric, what in (("top_eig", "top eigenvalue"), ("trace", "trace")):
            test = trend(*_over(cells, lambda c, m=metric: _ft_at_b(view, c, m)))
            out.append(
                _Verdict(
                    test,
                    f"Fine-tuned OT fusion's {what} against the parents' batch size (different "
                    "initialisation)",
                    "sharper with larger batches",
                    "flatter with larger batches",
                    " per doubling of the batch size",
                )
            )
    if cells:
        ft = _flat(cells, lambda c: _ft_at_b(view, c, "test_acc"))
        best = _flat(
            cells,
            lambda c: list(
                np.fmax(view.values(c, "a", "test_acc"), view.values(c, "b", "test_acc"))
            ),
        )
        out.append(
            _Verdict(
                paired(ft, best),
                "Test accuracy of the fine-tuned OT fusion minus the better parent's "
                "(different initialisation)",
                "fine-tuning beats the parents",
                "the better parent stays ahead",
                " points",
            )
        )
    return out


def _mixed(view: StudyView) -> list[_Verdict]:
    """The claims on mixed batch sizes.

    Which alignment direction gives the lower barrier (seed Table 7), and whether the fine-tuned
    fusion of a small- and a large-batch parent is flatter than that of two large-batch parents.

    Returns:
        The claims.
    """
    out = []
    for init in ("same", "diff"):
        cells = view.cells_of(init, "mixed")
        # the larger-batch model aligned onto the smaller-batch one, and the same two batch sizes
        # the other way
        matched = [
            (d, u)
            for d in cells
            for u in cells
            if d.bs_a > d.bs_b and (u.bs_a, u.bs_b) == (d.bs_b, d.bs_a)
        ]
        if matched:
            test = paired(
                _flat([d for d, _ in matched], lambda c: view.barriers(c, "ot")),
                _flat([u for _, u in matched], lambda c: view.barriers(c, "ot")),
            )
            out.append(
                _Verdict(
                    test,
                    f"Post-alignment barrier, larger-batch model aligned onto the smaller-batch "
                    f"one minus the reverse ({INIT_NAME[init]})",
                    "aligning onto the small batch is worse",
                    "aligning onto the small batch is better",
                )
            )
    mixed = [c for c in view.cells_of("diff", "mixed") if ("ot", c.bs_b) in c.finetunes]
    large = max(
        (c for c in view.cells_of("diff", "corresponding") if ("ot", c.bs_b) in c.finetunes),
        key=lambda c: c.bs_a,
        default=None,
    )
    if mixed and large is not None:
        # one value per replicate (the mean over the mixed pairs): the pairs of a replicate share
        # their parents, so counting each pair would count the same seeds several times
        per_replicate = np.nanmean([_ft_at_b(view, c, "top_eig") for c in mixed], axis=0).tolist()
        test = unpaired(per_replicate, _ft_at_b(view, large, "top_eig"))
        out.append(
            _Verdict(
                test,
                "Top eigenvalue of the fine-tuned OT fusion of mixed batch sizes (mean of the "
                f"mixed pairs per replicate) minus that of batch {large.bs_a} (different "
                "initialisation)",
                "the mixed fusion is sharper",
                "the mixed fusion is flatter",
            )
        )
    return out
