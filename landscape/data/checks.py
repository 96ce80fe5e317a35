"""Checks of the arrays a data set is read into: bad data is a one-line error before any work.

The cases: strings instead of numbers, labels that are not class indices, inputs with NaN or
infinity, inputs and labels of different lengths, no examples at all.
"""

from __future__ import annotations

import numpy as np

from ..errors import LandscapeError


def float_inputs(source: str, name: str, x: np.ndarray) -> np.ndarray:
    """`x` as float32; raise unless it holds finite numbers for at least one example.

    Args:
        source: the file or data set, as messages name it.
        name: the array's name in `source`.
        x: the inputs, one example per row.

    Returns:
        `x` as float32 (not copied when it is float32 already).

    Raises:
        LandscapeError: `x` holds no numbers, no examples, or a NaN or infinity.

    Examples:
        >>> import numpy as np
        >>> float_inputs("f.npz", "x_train", np.array([[1, 2]])).dtype
        dtype('float32')
        >>> float_inputs("f.npz", "x_train", np.array([[1.0], [np.nan]]))
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: f.npz: x_train holds 1 NaN or infinite values ...
    """
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
    """`y` as int64 class indices, one per example; raise for anything else.

    Labels stored as floats are accepted when every one is a whole number, and a column (N, 1) is
    taken as a vector.

    Args:
        source: the file or data set, as messages name it.
        name: the array's name in `source`.
        y: the labels.
        examples: the number of inputs the labels must pair up with.

    Returns:
        The labels as int64, shape (N,).

    Raises:
        LandscapeError: labels that are not one non-negative whole number per example.

    Examples:
        >>> import numpy as np
        >>> class_labels("f.npz", "y_train", np.array([[0.0], [2.0]]), 2)
        array([0, 2])
        >>> class_labels("f.npz", "y_train", np.array([0.5]), 1)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: f.npz: y_train must hold integer class labels, ...
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
    """Raise when a split would be empty (too few examples for the held-out fractions).

    Args:
        source: the file or data set, as the message names it.
        sizes: each split's name -> its number of examples.
        total: the number of examples shared out.

    Raises:
        LandscapeError: a split has no examples.

    Examples:
        >>> check_split_sizes("f.npz", {"train": 8, "val": 1, "test": 1}, 10)
        >>> check_split_sizes("f.npz", {"train": 3, "val": 0, "test": 1}, 4)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: f.npz: too few examples (4): the val split ...
    """
    empty = [name for name, n in sizes.items() if n == 0]
    if empty:
        raise LandscapeError(
            f"{source}: too few examples ({total}): the {empty[0]} split would be empty "
            "(10% of the training data is held out for validation, and 20% "
            "for test when the file has no test arrays)"
        )
