"""A split of a dataset held as in-memory tensors, and seeded subsets of it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import LandscapeError, warn


@dataclass(frozen=True)
class Split:
    """Inputs `x` (N, ...) and integer class labels `y` (N,).

    Attributes:
        x: the inputs, one example per row.
        y: the class labels.

    Examples:
        >>> import torch
        >>> split = Split(torch.zeros(5, 3), torch.tensor([0, 1, 0, 1, 1]))
        >>> len(split), split.to("cpu").x.shape
        (5, torch.Size([5, 3]))
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """The same split on `device`.

        Args:
            device: where the tensors go.

        Returns:
            A new `Split`.
        """
        return Split(self.x.to(device), self.y.to(device))


def subsample(
    split: Split, n: int | None, seed: int = 0, what: str = "`samples`", of: str = "available"
) -> Split:
    """`n` examples drawn without replacement with `seed`.

    Args:
        split: the examples drawn from.
        n: how many; None or `len(split)` keeps all of them, and more than there are keeps all of
            them with a warning.
        seed: the seed of the draw.
        what: the setting's name in messages.
        of: the examples' description in the warning ("available", "in the validation split").

    Returns:
        The subsample (in the drawn order), or `split` itself when all are kept.

    Raises:
        LandscapeError: `n` is not positive.

    Examples:
        >>> import torch
        >>> split = Split(torch.arange(10.0)[:, None], torch.arange(10))
        >>> len(subsample(split, 4, seed=0))
        4
        >>> subsample(split, None) is split
        True
        >>> subsample(split, 0)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: `samples` must be positive, got 0
    """
    if n is not None and n <= 0:
        raise LandscapeError(f"{what} must be positive, got {n}")
    if n is None or n == len(split):
        return split
    if n > len(split):
        warn(f"{what} {n} is more than the {len(split)} examples {of}: using all {len(split)}")
        return split
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(split), generator=g)[:n].to(split.y.device)
    return Split(split.x[idx], split.y[idx])


def check_labels(split: Split, num_classes: int, what: str = "model") -> None:
    """Raise if a label cannot be predicted by a `num_classes`-way classifier.

    Args:
        split: the examples.
        num_classes: the classifier's number of outputs.
        what: the classifier, as the message names it.

    Raises:
        LandscapeError: a label is `num_classes` or more.

    Examples:
        >>> import torch
        >>> split = Split(torch.zeros(2, 1), torch.tensor([0, 3]))
        >>> check_labels(split, 4)
        >>> check_labels(split, 3)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: labels out of range: data has label 3 but ...
    """
    if len(split) and int(split.y.max()) >= num_classes:
        raise LandscapeError(
            f"labels out of range: data has label {int(split.y.max())} but the {what} "
            f"has {num_classes} classes"
        )
