"""Linear mode connectivity: loss and accuracy along the straight line between two models, and its
barrier.

The point at `a` is `θ(a) = (1 - a) θ_A + a θ_B` (parameters and BatchNorm buffers alike), so `a =
0` is A and `a = 1` is B. The barrier is the seed study's (section 2; Frankle et al. 2020, Entezari
et al. 2022): `B = max_a [L(θ(a)) - ((1 - a) L(θ_A) + a L(θ_B))]` over an evenly spaced grid of `a`
including both ends, computed on train and on test loss (docs/conventions.md, with θ_1 = B and θ_2 =
A), and the same for the error `1 - accuracy` (Frankle et al., "Linear Mode Connectivity and the
Lottery Ticket Hypothesis", ICML 2020, report error barriers). Since the excess is 0 at both ends,
that maximum is never negative: the signed barrier is the maximum over the interior points only,
negative where the line runs below the chord (a fused or repaired midpoint better than its parents),
and each barrier's position is where that interior maximum lies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from torch import nn

from .. import progress
from ..errors import LandscapeError, check_finite
from ..loss import Criterion
from ..models.outputs import Output
from .directions import path_coefficients
from .points import Data, evaluate_points, layout_difference
from .repaired import evaluate_repaired


@dataclass
class Curve:
    """Loss and accuracy along the line from A to B, with the train and test barriers and where they
    peak.
    """

    alphas: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    barrier_train: float  # loss barriers, clamped at 0 (the conventions' B)
    barrier_test: float
    argmax_train: float  # where the loss barrier's interior maximum lies
    argmax_test: float
    reset_bn: bool
    points: int
    repair: bool = False
    signed_barrier_train: float = (
        math.nan
    )  # the interior maximum itself (negative: below the chord)
    signed_barrier_test: float = math.nan
    error_barrier_train: float = math.nan  # the same for the error 1 - accuracy (a fraction)
    error_barrier_test: float = math.nan
    signed_error_barrier_train: float = math.nan
    signed_error_barrier_test: float = math.nan
    argmax_error_train: float = math.nan
    argmax_error_test: float = math.nan


def signed_barrier(alphas: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """`max_a [V(a) - ((1 - a) V(0) + a V(1))]` over the interior points of a curve sampled at
    `alphas` (both ends included; with only the two ends, over those: 0), and the `a` where it lies.

    Args:
        alphas: the grid of a, from 0 to 1.
        values: the loss (or error) at each a.

    Returns:
        (the signed barrier, its argmax).
    """
    alphas, values = np.asarray(alphas, dtype=np.float64), np.asarray(values, dtype=np.float64)
    excess = values - ((1 - alphas) * values[0] + alphas * values[-1])
    inner = slice(1, -1) if len(alphas) > 2 else slice(None)
    i = int(np.argmax(excess[inner]))
    return float(excess[inner][i]), float(alphas[inner][i])


def barrier(alphas: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """The barrier `max_a [V(a) - ((1 - a) V(0) + a V(1))]` over all of `alphas` (never negative),
    and the `a` of the interior maximum (`signed_barrier`).
    """
    signed, at = signed_barrier(alphas, values)
    return max(signed, 0.0), at


def _barriers(
    alphas: np.ndarray, loss: np.ndarray, acc: np.ndarray, split: str
) -> dict[str, float]:
    """The Curve fields of one split: loss and error barriers, clamped and signed, with their
    positions.
    """
    if not len(loss):
        return {
            f"{k}_{split}": math.nan
            for k in (
                "barrier",
                "argmax",
                "signed_barrier",
                "error_barrier",
                "signed_error_barrier",
                "argmax_error",
            )
        }
    signed, at = signed_barrier(alphas, loss)
    error, error_at = signed_barrier(alphas, 1 - np.asarray(acc, dtype=np.float64))
    return {
        f"barrier_{split}": max(signed, 0.0),
        f"argmax_{split}": at,
        f"signed_barrier_{split}": signed,
        f"error_barrier_{split}": max(error, 0.0),
        f"signed_error_barrier_{split}": error,
        f"argmax_error_{split}": error_at,
    }


def interpolation_curve(
    a: nn.Module,
    b: nn.Module,
    splits: Mapping[str, Data] | Data,
    points: int = 21,
    batch_size: int = 256,
    *,
    reset_bn: bool = False,
    batching: str = "auto",
    parallel: str = "data",
    criterion: Criterion = "ce",
    output: Output = None,
    repair_on: Data | None = None,
) -> Curve:
    """Loss and accuracy on `splits["train"]` and `splits["test"]` at `points` values of a from A
    (0) to B (1).

    Each split is a `Split` or any re-iterable of batches (`landscape.data.batches`); a single one
    instead of the mapping is the train split, and without a test split the test fields are empty
    (barrier NaN). `criterion` is "ce" (default), "nll", "lm" or a loss callable; `output` says
    which tensor of the models' outputs is the prediction (`landscape.models.outputs`). `reset_bn`:
    recompute BatchNorm statistics on the train split at every point instead of interpolating them.
    `repair_on`: REPAIR every interior point on these examples (`landscape.geometry.repaired`;
    models without BatchNorm, tensor outputs), each point then evaluated on its own.
    """
    splits = dict(splits) if isinstance(splits, Mapping) else {"train": splits}
    if "train" not in splits or set(splits) - {"train", "test"}:
        raise LandscapeError(
            f"interpolation_curve takes a train split and optionally a test split, got "
            f"{', '.join(map(repr, splits)) or 'none'}"
        )
    check_finite(a, "model A")
    check_finite(b, "model B")
    sa, sb = a.state_dict(), b.state_dict()
    difference = layout_difference([sa, sb], "`align` ot")
    if difference:
        raise LandscapeError(difference)
    if points < 2:
        raise LandscapeError(f"`points` must be at least 2 (both ends), got {points}")
    alphas, coeffs = path_coefficients(
        2, points
    )  # a from 0 to 1, coefficients (1 - a, a) on (A, B)
    order = [splits[name] for name in ("train", "test") if name in splits]
    if repair_on is not None and reset_bn:
        raise LandscapeError(
            "`repair_on` and `reset_bn` are two fixes for the same collapse: choose one"
        )
    bar = progress.bar(total=points, desc="barrier")
    if repair_on is not None:
        values = (
            evaluate_repaired(
                a,
                [sa, sb],
                coeffs,
                order,
                repair_on,
                batch_size,
                criterion=criterion,
                on_point=lambda p, _: bar.update(1),
            )
            .cpu()
            .numpy()
        )
    else:
        values = (
            evaluate_points(
                a,
                [sa, sb],
                coeffs,
                order,
                batch_size,
                reset_on=splits["train"] if reset_bn else None,
                batching=batching,
                parallel=parallel,
                criterion=criterion,
                output=output,
                on_chunk=lambda rows, _: bar.update(len(rows)),
            )
            .cpu()
            .numpy()
        )
    bar.close()
    train = values[0]
    test = values[1] if "test" in splits else np.full((0, 2), np.nan)
    curve = curve_from_values(alphas, train, test, reset_bn)
    curve.repair = repair_on is not None
    return curve


def curve_from_values(
    alphas: np.ndarray, train: np.ndarray, test: np.ndarray, reset_bn: bool = False
) -> Curve:
    """A `Curve` from (loss, accuracy) rows per point of `alphas` on the train and test splits (test
    may be empty).

    Args:
        alphas: the grid of a, from 0 to 1.
        train: (points, 2) loss and accuracy on the train split.
        test: (points, 2) on the test split, or (0, 2).
        reset_bn: recorded with the curve.

    Returns:
        The curve with every barrier.
    """
    fields = {
        **_barriers(alphas, train[:, 0], train[:, 1], "train"),
        **_barriers(alphas, test[:, 0], test[:, 1], "test"),
    }
    return Curve(
        alphas,
        train[:, 0],
        train[:, 1],
        test[:, 0],
        test[:, 1],
        reset_bn=reset_bn,
        points=len(alphas),
        **fields,
    )
