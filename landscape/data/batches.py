"""The examples a measurement sums over: a fixed, re-iterable sequence of `(inputs, targets)` batches.

Every loss, gradient, Hessian-vector product, BatchNorm reset and grid point loops over a `Batches`, built by
`as_batches` from
- a `Split` (tensors in memory): consecutive slices of `batch_size` examples; under torchrun each rank takes
  one contiguous shard of the examples;
- any re-iterable of `(inputs, targets)` pairs, the way users already hold their data (a `DataLoader`
  without shuffling or random augmentation, a list of tensor pairs): its own batches, moved to `device`;
  under torchrun rank r takes batches r, r + P, r + 2P, ... (give every rank the same loader, without a
  DistributedSampler). Two passes are compared when it is wrapped, and a loader whose batches change between
  passes (shuffling, random augmentation) is refused: the quantities measured here would not be defined.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from .. import dist
from ..errors import LandscapeError
from .split import Split

Batch = tuple[torch.Tensor, torch.Tensor]


def _fingerprint(x: torch.Tensor, y: torch.Tensor) -> tuple:
    """A cheap summary that changes when a batch's examples or their order change."""
    xd, yd = x.detach().double(), y.detach().double()
    weights = torch.arange(1, len(y) + 1, dtype=torch.float64, device=y.device)
    return (tuple(x.shape), float(xd.sum()), float((xd * xd).sum()), float((yd.reshape(len(y), -1).sum(1)
                                                                             * weights).sum()))


class Batches:
    """This rank's share of a fixed sequence of `(inputs, targets)` batches (see the module docstring)."""

    def __init__(self, source: Split | Iterable[Batch], batch_size: int = 256,
                 device: torch.device | str | None = None, sharded: bool = True):
        if batch_size <= 0:
            raise LandscapeError(f"`batch_size` must be positive, got {batch_size}")
        self.source, self.batch_size, self.sharded = source, batch_size, sharded
        self.device = torch.device(device) if device is not None else None
        if not isinstance(source, Split):
            self._check_loader()

    def __iter__(self) -> Iterator[Batch]:
        if isinstance(self.source, Split):
            yield from self._slices(self.source)
            return
        parts, me = (dist.world_size(), dist.rank()) if self.sharded else (1, 0)
        for i, batch in enumerate(self.source):
            if i % parts == me:
                x, y = _pair(batch, i)
                yield (x, y) if self.device is None else (x.to(self.device), y.to(self.device))

    def _slices(self, split: Split) -> Iterator[Batch]:
        rows = dist.shard(len(split)) if self.sharded else range(len(split))
        for start in range(rows.start, rows.stop, self.batch_size):
            stop = min(start + self.batch_size, rows.stop)
            x, y = split.x[start:stop], split.y[start:stop]
            yield (x, y) if self.device is None else (x.to(self.device), y.to(self.device))

    def local_examples(self) -> int:
        """Examples on this rank."""
        if isinstance(self.source, Split):
            rows = dist.shard(len(self.source)) if self.sharded else range(len(self.source))
            return len(rows)
        return sum(len(y) for _, y in self)

    def examples(self) -> int:
        """Examples on all ranks together (a collective under torchrun: every rank must call it)."""
        count = torch.tensor(float(self.local_examples()), dtype=torch.float64, device=self._device())
        return int(dist.all_reduce_sum(count)) if self.sharded else int(count)

    def first(self) -> Batch | None:
        """This rank's first batch (None when it has none)."""
        return next(iter(self), None)

    def _device(self) -> torch.device:
        if self.device is not None:
            return self.device
        if isinstance(self.source, Split):
            return self.source.y.device
        batch = self.first()
        return batch[1].device if batch is not None else torch.device("cpu")

    def _check_loader(self) -> None:
        if isinstance(self.source, Iterator):
            raise LandscapeError("the data is a one-shot iterator: pass something that can be iterated again "
                                 "(a DataLoader or a list of (inputs, targets) batches)")
        first = [_fingerprint(*_pair(b, i)) for i, b in enumerate(self.source)]
        if not first:
            raise LandscapeError("the data loader yields no batches")
        second = [_fingerprint(*_pair(b, i)) for i, b in enumerate(self.source)]
        if first != second:
            raise LandscapeError("the data loader gives different batches on two passes (shuffling or random "
                                 "augmentation?): use shuffle=False and no random transforms")


def _pair(batch: object, index: int) -> Batch:
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and all(isinstance(t, torch.Tensor) for t in batch[:2]):
        return batch[0], batch[1]
    raise LandscapeError(f"batch {index} of the data is not an (inputs, targets) pair of tensors")


def as_batches(data: Split | Batches | Iterable[Batch], batch_size: int = 256,
               device: torch.device | str | None = None, sharded: bool = True) -> Batches:
    """`data` as `Batches` (a `Batches` is returned as it is; `batch_size` applies to a `Split` only)."""
    if isinstance(data, Batches):
        return data
    return Batches(data, batch_size, device, sharded)
