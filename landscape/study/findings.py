"""The report's "What the numbers say": the seed study's claims tested on the study's own numbers,
each as one sentence that says whether the effect exceeds its uncertainty (two-sided tests: least
squares against log2 of the batch size for trends, paired t-tests for two numbers of the same pairs,
Welch's t-test otherwise; p adjusted by Holm over every test of the report, and no verdict from
fewer than MIN_N values). Nothing here is written by hand: the sentences follow from the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .stats import MIN_N, Test, holm, paired, trend, unpaired
from .view import Cell, StudyView

INIT_NAME = {"same": "same initialisation", "diff": "different initialisation"}


def direction_of(test: Test, up: str, down: str) -> str:
    """`up` for a positive effect, else `down`."""
    return up if test.effect > 0 else down


@dataclass(frozen=True)
class _Verdict:
    """One claim: its test (None when too few values), what it says, the words for either sign and
    the unit.
    """

    test: Test | None
    what: str
    up: str
    down: str
    unit: str = ""

    def sentence(self, test: Test | None) -> str:
        """The claim's sentence, given its test (Holm-adjusted)."""
        if test is None:
            return f"{self.what}: not testable (too few values)."
        if test.exact:
            exact = (
                "none, exactly zero"
                if test.effect == 0
                else f"{direction_of(test, self.up, self.down)}, {test.effect:+.3g}"
            )
            return f"{self.what}: {exact} ({test.n} values without any spread)."
        direction = direction_of(test, self.up, self.down)
        if not test.testable:
            return (
                f"{self.what}: {direction}, {test.text(self.unit)}: no verdict from fewer than "
                f"{MIN_N} "
                "values (the t-test would rest on under 4 degrees of freedom)."
            )
        if test.significant:
            return f"{self.what}: **{direction}**, {test.text(self.unit)}: exceeds its uncertainty."
        return f"{self.what}: {direction}, {test.text(self.unit)}, within the noise."


def _over(
    cells: list[Cell], values: Callable[[Cell], list[float]]
) -> tuple[list[int], list[float]]:
    """(batch size, value) of every replicate of every cell, flattened for a trend."""
    xs, ys = [], []
    for cell in cells:
        for v in values(cell):
            xs.append(cell.bs_a)
            ys.append(v)
    return xs, ys


def _flat(cells: list[Cell], values: Callable[[Cell], list[float]]) -> list[float]:
    return [v for cell in cells for v in values(cell)]


def findings(view: StudyView) -> list[str]:
    """The sentences, in the seed study's order: barriers, alignment, sharpness, fusion,
    fine-tuning, mixed; the p-values of all of them adjusted together by Holm's method.

    Args:
        view: the study store, read.

    Returns:
        One Markdown sentence per claim.
    """
    claims = _claims(view)
    return [c.sentence(t) for c, t in zip(claims, holm([c.test for c in claims]))]


def family_size(view: StudyView) -> int:
    """How many tests the report's Holm correction is over."""
    return sum(1 for c in _claims(view) if c.test is not None and not c.test.exact)


def _claims(view: StudyView) -> list[_Verdict]:
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
    """Every distinct parent's value once (a parent can belong to several pairs)."""
    seen: dict[str, tuple[int, float]] = {}
    for cell in cells:
        for pair in cell.pairs:
            for row in ("a", "b"):
                value = view.value(pair, row, metric)[0]
                if value is not None:
                    seen[pair[row]] = (cell.bs_a, value)
    return [x for x, _ in seen.values()], [y for _, y in seen.values()]


def _ft_at_b(view: StudyView, cell: Cell, metric: str) -> list[float]:
    return (
        view.values(cell, StudyView.ft_row("ot", cell.bs_b), metric)
        if ("ot", cell.bs_b) in cell.finetunes
        else []
    )


def _finetuned(view: StudyView) -> list[_Verdict]:
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
    """Mixed batch sizes: which alignment direction gives the lower barrier (seed Table 7), and
    whether the fine-tuned fusion of a small- and a large-batch parent is flatter than that of two
    large-batch parents.
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
