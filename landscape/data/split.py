"""A split of a dataset held as in-memory tensors, and seeded subsets of it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import LandscapeError, warn


@dataclass(frozen=True)
class Split:
    """Inputs `x` (N, ...) and integer class labels `y` (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """The same split on `device`."""
        return Split(self.x.to(device), self.y.to(device))


def subsample(
    split: Split, n: int | None, seed: int = 0, what: str = "`samples`", of: str = "available"
) -> Split:
    """`n` examples drawn without replacement with `seed`: all of them when `n` is None, and with a
    warning when `n` is more than there are. `what` names the setting and `of` the examples in
    messages.
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
    """Raise if a label cannot be predicted by a `num_classes`-way classifier."""
    if len(split) and int(split.y.max()) >= num_classes:
        raise LandscapeError(
            f"labels out of range: data has label {int(split.y.max())} but the {what} "
            f"has {num_classes} classes"
        )
