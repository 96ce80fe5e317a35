"""Checks of the arrays a data set is read into, so that bad data is a one-line error before any
work: strings instead of numbers, labels that are not class indices, inputs with NaN or infinity,
inputs and labels of different lengths, no examples at all.
"""

from __future__ import annotations

import numpy as np

from ..errors import LandscapeError


def float_inputs(source: str, name: str, x: np.ndarray) -> np.ndarray:
    """`x` as float32; raise unless it holds finite numbers for at least one example."""
    if x.dtype.kind not in "biuf":
        raise LandscapeError(f"{source}: {name} must hold numbers, got dtype {x.dtype}")
    if x.ndim == 0 or len(x) == 0:
        raise LandscapeError(f"{source}: {name} holds no examples")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(
        x.sum(dtype=np.float64)
    ):  # a sum in float64 is finite exactly when every value is
        bad = ~np.isfinite(x)
        first = int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))
        raise LandscapeError(
            f"{source}: {name} holds {int(bad.sum())} NaN or infinite values (the first in "
            f"example {first})"
        )
    return x


def class_labels(source: str, name: str, y: np.ndarray, examples: int) -> np.ndarray:
    """`y` as int64 class indices, one per example; raise for anything else. Labels stored as floats
    are accepted when every one is a whole number.
    """
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise LandscapeError(
            f"{source}: {name} must hold one class index per example, got shape {y.shape} "
            "(one-hot labels? store their argmax)"
        )
    if y.dtype.kind not in "biuf":
        raise LandscapeError(
            f"{source}: {name} must hold integer class labels, got dtype {y.dtype}"
        )
    if y.dtype.kind == "f":
        fractional = ~np.isfinite(y) | (y != np.round(y))
        if fractional.any():
            raise LandscapeError(
                f"{source}: {name} must hold integer class labels, found "
                f"{float(y[fractional][0])!r}"
            )
    if len(y) != examples:
        raise LandscapeError(
            f"{source}: {examples} inputs but {len(y)} labels in {name}: they must pair up"
        )
    labels = y.astype(np.int64)
    if len(labels) and labels.min() < 0:
        raise LandscapeError(f"{source}: labels out of range: found label {labels.min()}")
    return labels


def check_split_sizes(source: str, sizes: dict[str, int], total: int) -> None:
    """Raise when a split would be empty (too few examples for the held-out fractions)."""
    empty = [name for name, n in sizes.items() if n == 0]
    if empty:
        raise LandscapeError(
            f"{source}: too few examples ({total}): the {empty[0]} split would be empty "
            "(10% of the training data is held out for validation, and 20% "
            "for test when the file has no test arrays)"
        )
