"""Loss and accuracy at points of parameter space that are REPAIRed first (`training.repair`).

A point `sum_k c[k] S_k` between two or more models (a barrier line, a path through models) is
built as a model, its units' statistics are set to the same combination of the statistics of the
models it combines, and it is evaluated on its own. A point that is one of the models (a single
coefficient of 1) is that model, unrepaired. Unlike `evaluate_points`, every point costs one pass
per corrected layer over the repair examples.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..loss import Criterion
from ..training.repair import repair
from .points import Data, State, combine, evaluate_points


def _with_state(model: nn.Module, state: State) -> nn.Module:
    """A copy of `model` holding `state`, in eval mode.

    Returns:
        The copy.
    """
    out = copy.deepcopy(model)
    out.load_state_dict(state)
    return out.eval()


def evaluate_repaired(
    model: nn.Module,
    anchors: Sequence[State],
    coeffs: torch.Tensor | np.ndarray,
    splits: Sequence[Data],
    repair_on: Data,
    batch_size: int = 256,
    *,
    criterion: Criterion = "ce",
    on_point: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Mean loss and accuracy at the points `coeffs @ anchors`, each REPAIRed on `repair_on` first.

    REPAIR (`landscape.training.repair`) takes the anchors of non-zero weight as its parents.

    Args:
        model: a model of the anchors' architecture, without BatchNorm.
        anchors: K state dicts.
        coeffs: (P, K) coefficients, one row per point.
        splits: S datasets to evaluate on.
        repair_on: the examples REPAIR measures statistics on.
        batch_size: examples per batch of a `Split`.
        criterion: "ce", "nll" or a loss callable.
        on_point: called with (row, values (S, 2)) after each point (progress, resumable stores).

    Returns:
        (S, P, 2): the mean loss and accuracy per split and point, float64.

    Examples:
        The ends are the models themselves, unrepaired:

        >>> import torch
        >>> from landscape.data.split import Split
        >>> from landscape.geometry.points import evaluate_points
        >>> from torch import nn
        >>> with torch.random.fork_rng():
        ...     _ = torch.manual_seed(0)
        ...     a, b = [nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2)) for _ in "ab"]
        ...     data = Split(torch.randn(8, 2), torch.tensor([0, 1] * 4))
        >>> anchors = [a.state_dict(), b.state_dict()]
        >>> coeffs = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
        >>> values = evaluate_repaired(a, anchors, coeffs, [data], data)
        >>> ends = evaluate_points(a, anchors, coeffs[[0, 2]], [data])
        >>> values.shape, torch.allclose(values[:, [0, 2]], ends)
        (torch.Size([1, 3, 2]), True)
    """
    coeffs = torch.as_tensor(coeffs, dtype=torch.float64)
    parents: dict[int, nn.Module] = {}
    rows = []
    for p, c in enumerate(coeffs):
        used = [k for k in range(len(anchors)) if float(c[k]) != 0.0]
        point = _with_state(
            model, {key: value[0] for key, value in combine(anchors, c[None]).items()}
        )
        if not (len(used) == 1 and float(c[used[0]]) == 1.0):
            for k in used:
                if k not in parents:
                    parents[k] = _with_state(model, anchors[k])
            point = repair(
                point,
                [parents[k] for k in used],
                [float(c[k]) for k in used],
                repair_on,
                batch_size,
            )
        values = evaluate_points(
            point,
            [point.state_dict()],
            torch.ones(1, 1),
            splits,
            batch_size,
            batching="loop",
            criterion=criterion,
        )
        rows.append(values)
        if on_point is not None:
            on_point(p, values[:, 0])
    return torch.cat(rows, 1)
