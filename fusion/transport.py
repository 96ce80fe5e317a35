"""Transport maps between the units of a model (n) and of the fused-model estimate (m), with POT.

`plan` solves OT(a, b; C) (Singh & Jaggi, "Model Fusion via Optimal Transport", NeurIPS 2020,
eq. 1) exactly (EMD) or with entropic regularisation (Sinkhorn).
`Map` turns the plan T (n x m) into the two linear maps that move a model into the estimate's basis:
- rows (m x n) = diag(1/beta) T^T, beta = T^T 1 (Algorithm 1 line 14): unit j of the aligned model
  is the barycentric projection of the model's units, a convex combination with weights T[:, j] /
  beta_j;
- cols (n x m) = diag(1/alpha) T, alpha = T 1: applied to the input dimension of every consumer
  (line 9). For equal widths and uniform marginals this is the paper's `T diag(1/beta)`; scaling by
  the source's own mass alpha instead keeps the function when widths differ (a unit split into two
  copies gives each copy half of its outgoing weight, two merged units add theirs).
With EMD, uniform marginals and equal widths, n * T is a permutation matrix and both maps are exact:
the problem is then a linear assignment (an optimal vertex of the Birkhoff polytope is a
permutation, Birkhoff-von Neumann), which `plan` solves with scipy's `linear_sum_assignment`
(Crouse, "On implementing 2D rectangular assignment algorithms", IEEE TAES 2016) instead of the
network simplex: the same plan, several times faster on wide layers (benchmarks/fusion_speed.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from landscape.errors import LandscapeError, check_choice

from .choices import SOLVERS


def uniform(n: int) -> np.ndarray:
    """The uniform histogram on `n` units (the paper's default marginals).

    Args:
        n: the number of units.

    Returns:
        `n` masses of 1 / n.

    Examples:
        >>> uniform(4).tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    return np.full(n, 1.0 / n)


def normalised(weights: np.ndarray, floor: float = 1e-3) -> np.ndarray:
    """A histogram proportional to `weights`, every unit keeping at least `floor` of the mean mass.

    Negative weights count as 0; `floor` times the mean weight is added to every weight before
    normalising.

    Args:
        weights: one weight per unit.
        floor: the share of the mean weight every unit gets in addition.

    Returns:
        The masses, summing to one.

    Examples:
        >>> normalised([1.0, 3.0], floor=0.0).tolist()
        [0.25, 0.75]
        >>> normalised([0.0, 2.0], floor=1.0).tolist()
        [0.25, 0.75]
    """
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    w = w + floor * max(float(w.mean()), 1e-12)
    return w / w.sum()


def resolve_solver(solver: str | None, reg: float | None) -> tuple[str, float]:
    """The OT solver and its regularisation: EMD unless Sinkhorn is named or a `reg` is given.

    Args:
        solver: "emd", "sinkhorn" or None (not given).
        reg: the Sinkhorn regularisation, or None (not given: 0.01).

    Returns:
        The solver and the regularisation to use.

    Examples:
        >>> resolve_solver(None, None), resolve_solver(None, 0.05), resolve_solver("sinkhorn", None)
        (('emd', 0.01), ('sinkhorn', 0.05), ('sinkhorn', 0.01))
    """
    return solver or ("sinkhorn" if reg is not None else "emd"), 0.01 if reg is None else reg


def plan(
    cost: np.ndarray, a: np.ndarray, b: np.ndarray, solver: str = "emd", reg: float = 0.01
) -> np.ndarray:
    """The optimal transport plan T (n x m) with T 1 = a and T^T 1 = b for the ground cost `cost`.

    EMD is exact (a linear assignment where the masses are uniform and n = m, POT's network simplex
    otherwise). Sinkhorn (Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal
    Transport", NeurIPS 2013) solves the entropy-regularised problem on the cost divided by its
    largest entry, so that `reg` is relative and one value suits every layer.

    Args:
        cost: the ground cost (n x m).
        a: the masses of the n source units.
        b: the masses of the m target units.
        solver: "emd" or "sinkhorn".
        reg: Sinkhorn's regularisation, relative to the largest cost.

    Returns:
        The plan T (n x m).

    Raises:
        LandscapeError: an unknown solver, a non-finite cost, a `reg` that is not positive, or a
            Sinkhorn plan that is not finite.

    Examples:
        Two units each, the cheap pairing crossed:

        >>> import numpy as np
        >>> cost = np.array([[4.0, 1.0], [1.0, 4.0]])
        >>> (plan(cost, uniform(2), uniform(2)) * 2).tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """
    check_choice(solver, SOLVERS, "OT solver")
    # POT takes a second to import: only commands that solve a transport problem pay for it
    import ot

    cost = np.ascontiguousarray(cost, dtype=np.float64)
    if not np.isfinite(cost).all():
        raise LandscapeError(
            "the ground cost has non-finite entries (the models' weights or activations overflow)"
        )
    if solver == "emd":
        if is_assignment(a, b):
            return assignment_plan(cost)
        return ot.emd(a, b, cost, numItermax=max(100_000, 50 * cost.size))
    if reg <= 0:
        raise LandscapeError(f"`reg` must be positive for Sinkhorn, got {reg}")
    # reg is relative to the largest cost, so one value fits every layer
    scale = float(cost.max()) or 1.0
    with (
        warnings.catch_warnings()
    ):  # a plan short of full convergence is still rescaled by its own marginals
        warnings.simplefilter("ignore", UserWarning)
        t = ot.sinkhorn(
            a, b, cost / scale, reg, method="sinkhorn_stabilized", numItermax=10_000, stopThr=1e-7
        )
    if not np.isfinite(t).all() or t.sum() <= 0:
        raise LandscapeError(
            f"Sinkhorn failed with reg={reg}; use a larger `reg` or the exact solver"
        )
    return t


def is_assignment(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether OT between histograms `a` and `b` is a linear assignment (equal sizes, uniform).

    Args:
        a: the source masses.
        b: the target masses.

    Returns:
        True when both have n entries, each 1 / n.

    Examples:
        >>> is_assignment(uniform(3), uniform(3)), is_assignment(uniform(3), uniform(2))
        (True, False)
    """
    n = len(a)
    return (
        n == len(b)
        and bool(np.allclose(a, 1.0 / n, rtol=1e-12, atol=0))
        and bool(np.allclose(b, 1.0 / n, rtol=1e-12, atol=0))
    )


def assignment(score: np.ndarray, maximize: bool = False) -> np.ndarray:
    """The permutation `index` that minimises (or maximises) the total of `score[index[j], j]`.

    Unit j of the second side is unit `index[j]` of the first (Crouse's algorithm, scipy's
    `linear_sum_assignment`).

    Args:
        score: the n x n scores.
        maximize: maximise the total instead of minimising it.

    Returns:
        `index`, n integers.

    Raises:
        LandscapeError: a score is not finite.

    Examples:
        >>> import numpy as np
        >>> score = np.array([[0.0, 5.0, 1.0], [1.0, 0.0, 5.0], [5.0, 1.0, 0.0]])
        >>> assignment(score).tolist(), assignment(score, maximize=True).tolist()
        ([0, 1, 2], [2, 0, 1])
    """
    from scipy.optimize import linear_sum_assignment

    score = np.asarray(score, dtype=np.float64)
    if not np.isfinite(score).all():
        raise LandscapeError(
            "the assignment scores have non-finite entries (the models' weights or activations "
            "overflow)"
        )
    rows, cols = linear_sum_assignment(score.T, maximize=maximize)
    index = np.empty(score.shape[1], dtype=np.int64)
    index[rows] = cols
    return index


def assignment_plan(cost: np.ndarray) -> np.ndarray:
    """The exact OT plan for uniform masses on n = m units: the optimal permutation matrix / n.

    Args:
        cost: the n x n ground cost.

    Returns:
        The plan (n x n).

    Examples:
        >>> import numpy as np
        >>> (assignment_plan(np.array([[4.0, 1.0], [1.0, 4.0]])) * 2).tolist()
        [[0.0, 1.0], [1.0, 0.0]]
    """
    n = cost.shape[0]
    t = np.zeros(cost.shape)
    t[assignment(cost), np.arange(n)] = 1.0 / n
    return t


@dataclass(frozen=True)
class Map:
    """How a group's units move into the estimate's basis: `rows` for producers, `cols` for inputs.

    Attributes:
        rows: (m, n): unit j of the result as a combination of the model's units.
        cols: (n, m): how a consumer's input columns are gathered.
        index: when the plan is a permutation, unit j of the result is unit `index[j]`; else None.

    Examples:
        A plan that sends unit 0 to unit 1 and back is a permutation:

        >>> import numpy as np
        >>> Map.from_plan(np.array([[0.0, 0.5], [0.5, 0.0]])).index.tolist()
        [1, 0]
    """

    rows: torch.Tensor
    cols: torch.Tensor
    index: torch.Tensor | None = None

    @staticmethod
    def from_plan(t: np.ndarray, device: torch.device | str = "cpu") -> Map:
        """The barycentric maps of plan `t` (see the module docstring).

        Args:
            t: the plan (n x m).
            device: where the maps' tensors live.

        Returns:
            The map, with `index` set when the plan is a permutation.
        """
        t = torch.as_tensor(t, dtype=torch.float64, device=device)
        beta = t.sum(0).clamp_min(torch.finfo(t.dtype).tiny)
        alpha = t.sum(1).clamp_min(torch.finfo(t.dtype).tiny)
        rows, cols = (t / beta).T.contiguous(), t / alpha[:, None]
        best, index = rows.max(1)
        one_to_one = (
            t.shape[0] == t.shape[1]
            and bool((best > 1 - 1e-9).all())
            and int(torch.unique(index).numel()) == t.shape[0]
        )
        return Map(rows, cols, index if one_to_one else None)

    @staticmethod
    def from_index(index: torch.Tensor | np.ndarray, device: torch.device | str = "cpu") -> Map:
        """The map of a permutation: unit j of the result is unit `index[j]` of the model.

        Args:
            index: the permutation.
            device: where the map's tensors live.

        Returns:
            The map.
        """
        index = torch.as_tensor(np.asarray(index), dtype=torch.long, device=device)
        n = len(index)
        rows = torch.zeros(n, n, dtype=torch.float64, device=device)
        rows[torch.arange(n, device=device), index] = 1.0
        return Map(rows, rows.T.contiguous(), index)

    @property
    def n(self) -> int:
        """Units of the model (the source)."""
        return self.cols.shape[0]

    def apply(self, t: torch.Tensor, role: str) -> torch.Tensor:
        """Move axis 1 of `t` (outer, n, inner, rest) into the estimate's basis.

        Args:
            t: the tensor, its units on axis 1.
            role: "out" averages units into the estimate's (`rows`), "in" gathers a consumer's
                inputs (`cols`).

        Returns:
            The moved tensor (float64 unless the map is a permutation).
        """
        if self.index is not None:
            return t.index_select(1, self.index.to(t.device))
        m = (self.rows if role == "out" else self.cols.T).to(t.device)
        return torch.einsum("mn,onir->omir", m, t.to(m.dtype))


def move_axis(
    value: torch.Tensor, axis: int, segments, role: str, maps: dict[int, Map], sizes: list[int]
) -> torch.Tensor:
    """`value` with axis `axis` moved into the estimate's basis, segment by segment.

    Each segment (group, inner, outer) of the axis is moved by its group's map; segments of groups
    without a map stay as they are.

    Args:
        value: the parameter or buffer.
        axis: the axis that units index.
        segments: the axis's segments (`fusion.graph.Segment`), in order.
        role: "out" or "in" (see `Map.apply`).
        maps: the transport map of each group that moves.
        sizes: the source model's group sizes.

    Returns:
        The moved tensor; float64 where a plan is not a permutation.

    Raises:
        RuntimeError: the segments do not cover the axis (an internal error).

    Examples:
        A bias of two units, swapped:

        >>> import torch
        >>> from fusion.graph import Segment
        >>> maps = {0: Map.from_index([1, 0])}
        >>> move_axis(torch.tensor([1.0, 2.0]), 0, (Segment(0),), "out", maps, [2]).tolist()
        [2.0, 1.0]
    """
    v = value.movedim(axis, 0)
    pieces, off = [], 0
    for seg in segments:
        n = sizes[seg.group]
        length = n * seg.inner * seg.outer
        chunk = v[off : off + length]
        off += length
        mp = maps.get(seg.group)
        if mp is not None:
            moved = mp.apply(chunk.reshape(seg.outer, n, seg.inner, -1), role)
            chunk = moved.reshape(-1, *v.shape[1:])
        pieces.append(chunk)
    if off != v.shape[0]:
        raise RuntimeError(f"a layout of {off} elements on an axis of {v.shape[0]}")
    if len(pieces) > 1:
        dtype = torch.float64 if any(p.dtype == torch.float64 for p in pieces) else v.dtype
        pieces = [torch.cat([p.to(dtype) for p in pieces])]
    return pieces[0].movedim(0, axis)
