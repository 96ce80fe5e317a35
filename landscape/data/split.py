"""A split of a dataset held as in-memory tensors, and seeded subsets of it."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import LandscapeError


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


def subsample(split: Split, n: int | None, seed: int = 0) -> Split:
    """`n` examples drawn without replacement with `seed` (all of them when `n` is None or too large)."""
    if n is None or n >= len(split):
        return split
    if n <= 0:
        raise LandscapeError(f"--samples must be positive, got {n}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(split), generator=g)[:n].to(split.y.device)
    return Split(split.x[idx], split.y[idx])


def check_labels(split: Split, num_classes: int, what: str = "model") -> None:
    """Raise if a label cannot be predicted by a `num_classes`-way classifier."""
    if len(split) and int(split.y.max()) >= num_classes:
        raise LandscapeError(f"labels out of range: data has label {int(split.y.max())} but the {what} "
                             f"has {num_classes} classes")
