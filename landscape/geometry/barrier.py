"""Linear mode connectivity: loss and accuracy along the straight line between two models, and its barrier.

The point at `a` is `θ(a) = (1 - a) θ_A + a θ_B` (parameters and BatchNorm buffers alike), so `a = 0` is A and
`a = 1` is B. The barrier is the seed study's (section 2; Frankle et al. 2020, Entezari et al. 2022):
`B = max_a [L(θ(a)) - ((1 - a) L(θ_A) + a L(θ_B))]` over an evenly spaced grid of `a` including both ends,
computed on train and on test loss (docs/conventions.md, with θ_1 = B and θ_2 = A).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from torch import nn

from .. import progress
from ..errors import LandscapeError
from ..loss import Criterion
from ..models.checks import check_finite
from .directions import path_coefficients
from .points import Data, evaluate_points, layout_difference


@dataclass
class Curve:
    """Loss and accuracy along the line from A to B, with the train and test barriers and where they peak."""

    alphas: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    barrier_train: float
    barrier_test: float
    argmax_train: float
    argmax_test: float
    reset_bn: bool
    points: int


def barrier(alphas: np.ndarray, losses: np.ndarray) -> tuple[float, float]:
    """The barrier `max_a [L(a) - ((1 - a) L(0) + a L(1))]` of a curve sampled at `alphas`, and its argmax."""
    alphas, losses = np.asarray(alphas, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    excess = losses - ((1 - alphas) * losses[0] + alphas * losses[-1])
    i = int(np.argmax(excess))
    return float(excess[i]), float(alphas[i])


def interpolation_curve(a: nn.Module, b: nn.Module, splits: Mapping[str, Data] | Data, points: int = 21,
                        batch_size: int = 256, *, reset_bn: bool = False, batching: str = "auto",
                        parallel: str = "data", criterion: Criterion = "ce") -> Curve:
    """Loss and accuracy on `splits["train"]` and `splits["test"]` at `points` values of a from A (0) to B (1).

    Each split is a `Split` or any re-iterable of `(inputs, targets)` batches; a single one instead of the mapping
    is the train split, and without a test split the test fields are empty (barrier NaN). `criterion` is "ce"
    (default), "nll" or a loss callable. `reset_bn`: recompute BatchNorm statistics on the train split at every
    point instead of interpolating them.
    """
    splits = dict(splits) if isinstance(splits, Mapping) else {"train": splits}
    if "train" not in splits or set(splits) - {"train", "test"}:
        raise LandscapeError(f"interpolation_curve takes a train split and optionally a test split, got "
                             f"{', '.join(map(repr, splits)) or 'none'}")
    check_finite(a, "model A")
    check_finite(b, "model B")
    sa, sb = a.state_dict(), b.state_dict()
    difference = layout_difference([sa, sb], "--align ot")
    if difference:
        raise LandscapeError(difference)
    if points < 2:
        raise LandscapeError(f"--points must be at least 2 (both ends), got {points}")
    alphas, coeffs = path_coefficients(2, points)  # a from 0 to 1, coefficients (1 - a, a) on (A, B)
    order = [splits[name] for name in ("train", "test") if name in splits]
    bar = progress.bar(total=points, desc="barrier")
    values = evaluate_points(a, [sa, sb], coeffs, order, batch_size,
                             reset_on=splits["train"] if reset_bn else None, batching=batching,
                             parallel=parallel, criterion=criterion,
                             on_chunk=lambda rows, _: bar.update(len(rows))).cpu().numpy()
    bar.close()
    train = values[0]
    test = values[1] if "test" in splits else np.full((0, 2), np.nan)
    b_train, at_train = barrier(alphas, train[:, 0])
    b_test, at_test = barrier(alphas, test[:, 0]) if "test" in splits else (math.nan, math.nan)
    return Curve(alphas, train[:, 0], train[:, 1], test[:, 0], test[:, 1], b_train, b_test, at_train, at_test,
                 reset_bn, points)
