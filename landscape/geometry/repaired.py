"""Loss and accuracy at points of parameter space that are REPAIRed first
(`landscape.training.repair`).

A point `sum_k c[k] S_k` between two or more models (a barrier line, a path through models) is built
as a model, its units' statistics are set to the same combination of the statistics of the models it
combines, and it is evaluated on its own. A point that is one of the models (a single coefficient of
1) is that model, unrepaired. Unlike `evaluate_points`, every point costs one pass per corrected
layer over the repair examples.
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
    """Mean loss and accuracy `(S, P, 2)` at the points `coeffs @ anchors` (rows: points; `anchors`:
    states of `model`'s architecture), each REPAIRed on `repair_on` with the anchors of non-zero
    weight as its parents.

    Args:
        on_point: called with (row, values (S, 2)) after each point (progress, resumable stores).

    Returns:
        The values, float64.
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
