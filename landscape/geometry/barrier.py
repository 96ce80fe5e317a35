"""Linear mode connectivity: loss and accuracy along the line between two models, and its barrier.

The point at `a` is `θ(a) = (1 - a) θ_A + a θ_B` (parameters and BatchNorm buffers alike), so
`a = 0` is A and `a = 1` is B. `interpolation_curve` measures the line, `curve_from_values` reads
the barriers off it, and `signed_barrier` has their definition and papers.
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
    """Loss and accuracy along the line from A to B, with the train and test barriers.

    The barriers are those of `signed_barrier`: clamped at 0 (`barrier_*`, the conventions' B) and
    signed (`signed_*`), for the loss and for the error 1 - accuracy. Without a test split the test
    arrays are empty and the test barriers NaN.

    Attributes:
        alphas: the points a, from 0 (A) to 1 (B) (for `curve.measure_curve`, the curve's t).
        train_loss: the mean train loss at each a.
        train_acc: the train accuracy at each a.
        test_loss: the mean test loss at each a.
        test_acc: the test accuracy at each a.
        barrier_train: the train loss barrier, clamped at 0.
        barrier_test: the test loss barrier, clamped at 0.
        argmax_train: where the train loss barrier's interior maximum lies.
        argmax_test: where the test loss barrier's interior maximum lies.
        reset_bn: whether BatchNorm statistics were recomputed at every point.
        points: the number of points.
        repair: whether every interior point was REPAIRed.
        signed_barrier_train: the interior maximum itself (negative: below the chord).
        signed_barrier_test: the same on the test split.
        error_barrier_train: the train error barrier, clamped at 0 (a fraction).
        error_barrier_test: the test error barrier, clamped at 0.
        signed_error_barrier_train: the train error's interior maximum.
        signed_error_barrier_test: the test error's interior maximum.
        argmax_error_train: where the train error barrier's interior maximum lies.
        argmax_error_test: where the test error barrier's interior maximum lies.

    Examples:
        >>> import numpy as np
        >>> train = np.array([[1.0, 0.9], [3.0, 0.5], [2.0, 0.8]])  # (loss, accuracy) per point
        >>> curve = curve_from_values(np.array([0.0, 0.5, 1.0]), train, np.zeros((0, 2)))
        >>> curve.barrier_train, curve.argmax_train, round(curve.error_barrier_train, 4)
        (1.5, 0.5, 0.35)
        >>> curve.barrier_test
        nan
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
    # the interior maximum itself (negative: below the chord)
    signed_barrier_train: float = math.nan
    signed_barrier_test: float = math.nan
    error_barrier_train: float = math.nan  # the same for the error 1 - accuracy (a fraction)
    error_barrier_test: float = math.nan
    signed_error_barrier_train: float = math.nan
    signed_error_barrier_test: float = math.nan
    argmax_error_train: float = math.nan
    argmax_error_test: float = math.nan


def signed_barrier(alphas: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """The excess over the chord, maximised over the interior points of a curve, and where it lies.

    The barrier is the seed study's (section 2; Frankle, Dziugaite, Roy & Carbin, "Linear mode
    connectivity and the lottery ticket hypothesis", ICML 2020; Entezari, Sedghi, Saukh &
    Neyshabur, "The role of permutation invariance in linear mode connectivity of neural networks",
    ICLR 2022): `B = max_a [V(a) - ((1 - a) V(0) + a V(1))]` over an evenly spaced grid of `a`
    including both ends, computed on train and on test loss (docs/conventions.md, with θ_1 = B and
    θ_2 = A), and the same for the error `1 - accuracy` (Frankle et al. report error barriers).
    Since the excess is 0 at both ends, that maximum is never negative (`barrier`); the signed
    barrier is the maximum over the interior points only, negative where the line runs below the
    chord (a fused or repaired midpoint better than its parents). With only the two ends, it is
    taken over those: 0.

    Args:
        alphas: the grid of a, from 0 to 1.
        values: the loss (or error) at each a.

    Returns:
        (the signed barrier, the a where it lies).

    Examples:
        >>> signed_barrier([0.0, 0.5, 1.0], [1.0, 3.0, 2.0])  # 3 - (1 + 2) / 2
        (1.5, 0.5)
        >>> signed_barrier([0.0, 0.5, 1.0], [1.0, 1.0, 2.0])  # below the chord
        (-0.5, 0.5)
    """
    alphas, values = np.asarray(alphas, dtype=np.float64), np.asarray(values, dtype=np.float64)
    excess = values - ((1 - alphas) * values[0] + alphas * values[-1])
    inner = slice(1, -1) if len(alphas) > 2 else slice(None)
    i = int(np.argmax(excess[inner]))
    return float(excess[inner][i]), float(alphas[inner][i])


def barrier(alphas: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """The barrier of `signed_barrier` clamped at 0, and where the interior maximum lies.

    Args:
        alphas: the grid of a, from 0 to 1.
        values: the loss (or error) at each a.

    Returns:
        (max(signed barrier, 0), the a of the interior maximum).

    Examples:
        >>> barrier([0.0, 0.5, 1.0], [1.0, 1.0, 2.0])
        (0.0, 0.5)
    """
    signed, at = signed_barrier(alphas, values)
    return max(signed, 0.0), at


def _barriers(
    alphas: np.ndarray, loss: np.ndarray, acc: np.ndarray, split: str
) -> dict[str, float]:
    """The Curve fields of one split: loss and error barriers, clamped and signed, and positions.

    Returns:
        The fields by name (NaN for an empty split).
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
    """Loss and accuracy on the train and test splits at `points` values of a from A (0) to B (1).

    The barriers are those of `signed_barrier`. Non-finite models and models of different layouts
    are refused by the checks this calls.

    Args:
        a: model A.
        b: model B, of A's architecture and widths.
        splits: `{"train": ..., "test": ...}`, each a `Split` or any re-iterable of batches
            (`landscape.data.batches`); a single dataset instead of the mapping is the train split,
            and without a test split the test fields are empty (barrier NaN).
        points: the number of values of a, both ends included.
        batch_size: examples per batch of a `Split`.
        reset_bn: recompute BatchNorm statistics on the train split at every point instead of
            interpolating them.
        batching: how points are evaluated (`points.evaluate_points`).
        parallel: how points are shared under torchrun (`points.evaluate_points`).
        criterion: "ce" (default), "nll", "lm" or a loss callable.
        output: which tensor of the models' outputs is the prediction (`landscape.models.outputs`).
        repair_on: REPAIR every interior point on these examples (`landscape.geometry.repaired`;
            models without BatchNorm, tensor outputs), each point then evaluated on its own.

    Returns:
        The curve with every barrier.

    Raises:
        LandscapeError: splits other than train and test, models of different layouts, `points`
            below 2, or both `repair_on` and `reset_bn`.

    Examples:
        From W = 0 to W = I for logits x W^T: the midpoint W = I / 2 lies below the chord.

        >>> import torch
        >>> from landscape.data.split import Split
        >>> a, b = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False)
        >>> _ = torch.nn.init.zeros_(a.weight), torch.nn.init.eye_(b.weight)
        >>> data = Split(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
        >>> curve = interpolation_curve(a, b, data, points=3)
        >>> curve.train_loss.round(4).tolist()  # log 2, (log(1 + e^-1/2) + log(1 + e^-1)) / 2
        [0.6931, 0.3937, 0.2201]
        >>> round(curve.signed_barrier_train, 4), curve.barrier_train
        (-0.063, 0.0)
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
    # a from 0 to 1, coefficients (1 - a, a) on (A, B)
    alphas, coeffs = path_coefficients(2, points)
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
    """A `Curve` from (loss, accuracy) rows per point of `alphas` on the train and test splits.

    Args:
        alphas: the grid of a, from 0 to 1.
        train: (points, 2) loss and accuracy on the train split.
        test: (points, 2) on the test split, or (0, 2).
        reset_bn: recorded with the curve.

    Returns:
        The curve with every barrier.

    Examples:
        >>> import numpy as np
        >>> values = np.array([[1.0, 1.0], [1.2, 0.5], [1.0, 1.0]])
        >>> curve = curve_from_values(np.array([0.0, 0.5, 1.0]), values, values)
        >>> round(curve.barrier_test, 4), curve.error_barrier_test, curve.points
        (0.2, 0.5, 3)
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
