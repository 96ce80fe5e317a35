"""The examples a measurement sums over: a fixed, re-iterable sequence of `(inputs, targets)`.

Every loss, gradient, Hessian-vector product, BatchNorm reset and grid point loops over a `Batches`,
built by `as_batches` from
- a `Split` (tensors in memory): consecutive slices of `batch_size` examples; under torchrun each
  rank takes one contiguous shard of the examples;
- any re-iterable of batches, the way users already hold their data (a `DataLoader` without
  shuffling or random augmentation, a list of tensor pairs): its own batches, moved to `device`. A
  batch is `(inputs, targets)` (more entries are ignored) or a mapping with a `labels` entry
  (Hugging Face style: the targets are `labels`, the inputs every other entry); inputs are a tensor
  (`model(x)`), a tuple or list of tensors (`model(*x)`) or a mapping of tensors (`model(**x)`);
  under torchrun rank r takes batches r, r + P, r + 2P, ... (give every rank the same loader,
  without a DistributedSampler). Two passes are compared when it is wrapped, and a loader whose
  batches change between passes (shuffling, random augmentation) is refused: the quantities measured
  here would not be defined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import torch

from .. import dist
from ..errors import LandscapeError
from .split import Split

Inputs = torch.Tensor | tuple[torch.Tensor, ...] | Mapping[str, torch.Tensor]
Batch = tuple[Inputs, torch.Tensor]
# how many terms a batch's targets add to a mean (`landscape.loss.counter`)
Count = Callable[[torch.Tensor], int]


def map_inputs(fn: Callable[[torch.Tensor], torch.Tensor], inputs: Inputs) -> Inputs:
    """`fn` applied to every tensor of `inputs`; other entries are kept as they are.

    Args:
        fn: what is done to each tensor (e.g. a move to a device).
        inputs: a tensor, a tuple of entries or a mapping of entries.

    Returns:
        The inputs in the same form: a tensor, a tuple or a dict.

    Examples:
        >>> import torch
        >>> map_inputs(lambda t: 2 * t, {"ids": torch.tensor([1, 2]), "name": "x"})
        {'ids': tensor([2, 4]), 'name': 'x'}
        >>> map_inputs(lambda t: t + 1, (torch.tensor(1), None))
        (tensor(2), None)
    """
    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    if isinstance(inputs, Mapping):
        return {k: fn(v) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    return tuple(fn(v) if isinstance(v, torch.Tensor) else v for v in inputs)


def input_tensors(inputs: Inputs) -> list[torch.Tensor]:
    """The tensors of `inputs`, in order.

    Args:
        inputs: a tensor, a tuple of entries or a mapping of entries.

    Returns:
        The tensors among them (other entries are left out).

    Examples:
        >>> import torch
        >>> input_tensors({"ids": torch.tensor([1]), "mask": None, "pos": torch.tensor([0])})
        [tensor([1]), tensor([0])]
    """
    if isinstance(inputs, torch.Tensor):
        return [inputs]
    values = inputs.values() if isinstance(inputs, Mapping) else inputs
    return [v for v in values if isinstance(v, torch.Tensor)]


def _fingerprint(x: Inputs, y: torch.Tensor) -> tuple:
    """A cheap summary that changes when a batch's examples or their order change.

    Returns:
        Each input tensor's shape, sum and sum of squares, and a position-weighted sum of `y`.
    """
    summary = []
    for t in input_tensors(x):
        td = t.detach().double()
        summary += [tuple(t.shape), float(td.sum()), float((td * td).sum())]
    yd = y.detach().double()
    weights = torch.arange(1, len(y) + 1, dtype=torch.float64, device=y.device)
    return (*summary, float((yd.reshape(len(y), -1).sum(1) * weights).sum()))


class Batches:
    """This rank's share of a fixed sequence of `(inputs, targets)` batches (see the module text).

    Iterating gives the batches, each `(inputs, targets)`, moved to `device` when one is given.

    Args:
        source: a `Split`, cut into consecutive slices, or a re-iterable of batches (a
            `DataLoader` without shuffling, a list of pairs), checked on two passes.
        batch_size: the examples per slice of a `Split` (a loader keeps its own batches).
        device: where batches are moved (None: where they are).
        sharded: under torchrun, each rank takes its share; False: every rank takes all.

    Raises:
        LandscapeError: a `batch_size` below 1, or a loader that is a one-shot iterator, yields
            nothing, yields something other than batches, or changes between passes.

    Examples:
        >>> import torch
        >>> split = Split(torch.zeros(5, 2), torch.tensor([0, 1, 0, 1, 1]))
        >>> batches = Batches(split, batch_size=2)
        >>> [len(y) for _, y in batches], batches.examples()
        ([2, 2, 1], 5)
        >>> loader = [(torch.zeros(3, 2), torch.tensor([0, 1, 1]))]
        >>> Batches(loader).first()[1]
        tensor([0, 1, 1])
    """

    def __init__(
        self,
        source: Split | Iterable[Batch],
        batch_size: int = 256,
        device: torch.device | str | None = None,
        sharded: bool = True,
    ):
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
                yield (
                    (x, y)
                    if self.device is None
                    else (map_inputs(self._move, x), y.to(self.device))
                )

    def _move(self, t: torch.Tensor) -> torch.Tensor:
        """`t` on the batches' device.

        Returns:
            The moved tensor.
        """
        return t.to(self.device)

    def _slices(self, split: Split) -> Iterator[Batch]:
        """This rank's consecutive slices of `split`.

        Yields:
            `(inputs, targets)` of at most `batch_size` examples.
        """
        rows = dist.shard(len(split)) if self.sharded else range(len(split))
        for start in range(rows.start, rows.stop, self.batch_size):
            stop = min(start + self.batch_size, rows.stop)
            x, y = split.x[start:stop], split.y[start:stop]
            yield (x, y) if self.device is None else (x.to(self.device), y.to(self.device))

    def local_examples(self, count: Count = len) -> int:
        """Examples on this rank, or the terms `count(targets)` of its batches (predicted tokens).

        Args:
            count: how many terms a batch's targets add (`len`: its examples).

        Returns:
            The sum over this rank's batches.
        """
        if isinstance(self.source, Split) and count is len:
            rows = dist.shard(len(self.source)) if self.sharded else range(len(self.source))
            return len(rows)
        return sum(int(count(y)) for _, y in self)

    def examples(self, count: Count = len) -> int:
        """Examples (or terms, see `local_examples`) on all ranks together.

        A collective under torchrun: every rank must call it.

        Args:
            count: how many terms a batch's targets add (`len`: its examples).

        Returns:
            The sum over all ranks (this rank's alone when not `sharded`).
        """
        total = torch.tensor(
            float(self.local_examples(count)), dtype=torch.float64, device=self._device()
        )
        return int(dist.all_reduce_sum(total)) if self.sharded else int(total)

    def first(self) -> Batch | None:
        """This rank's first batch.

        Returns:
            The batch, or None when this rank has none.
        """
        return next(iter(self), None)

    def _device(self) -> torch.device:
        """Where the batches' targets are (a collective's tensor goes there).

        Returns:
            `device` if given, else the targets' device (the CPU for no batches).
        """
        if self.device is not None:
            return self.device
        if isinstance(self.source, Split):
            return self.source.y.device
        batch = self.first()
        return batch[1].device if batch is not None else torch.device("cpu")

    def _check_loader(self) -> None:
        """Refuse a loader that cannot be iterated twice, is empty, or changes between passes.

        Raises:
            LandscapeError: the loader is one of those.
        """
        if isinstance(self.source, Iterator):
            raise LandscapeError(
                "the data is a one-shot iterator: pass something that can be iterated again "
                "(a DataLoader or a list of (inputs, targets) batches)"
            )
        first = [_fingerprint(*_pair(b, i)) for i, b in enumerate(self.source)]
        if not first:
            raise LandscapeError("the data loader yields no batches")
        second = [_fingerprint(*_pair(b, i)) for i, b in enumerate(self.source)]
        if first != second:
            raise LandscapeError(
                "the data loader gives different batches on two passes (shuffling or random "
                "augmentation?): use shuffle=False and no random transforms"
            )


def _is_inputs(x: object) -> bool:
    """Whether `x` is a batch's inputs: a tensor, or a tuple, list or mapping holding one.

    Returns:
        True for inputs.
    """
    if isinstance(x, torch.Tensor):
        return True
    values = (
        list(x.values()) if isinstance(x, Mapping) else x if isinstance(x, (tuple, list)) else []
    )
    return any(isinstance(v, torch.Tensor) for v in values)


def _pair(batch: object, index: int) -> Batch:
    """`(inputs, targets)` of one batch of a user's loader (the forms of the module docstring).

    Returns:
        The inputs (a tuple where the batch held a list) and the targets.

    Raises:
        LandscapeError: the batch has none of those forms.
    """
    if isinstance(batch, Mapping):
        if "labels" not in batch:
            raise LandscapeError(
                f"batch {index} of the data is a mapping without 'labels' (keys: "
                f"{', '.join(map(str, batch)) or 'none'}): give the targets as 'labels' or yield "
                "(inputs, targets) pairs"
            )
        x, y = {k: v for k, v in batch.items() if k != "labels"}, batch["labels"]
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
        x, y = batch[0], batch[1]
        x = tuple(x) if isinstance(x, list) else x
    else:
        raise LandscapeError(
            f"batch {index} of the data is a {type(batch).__name__}, not an (inputs, targets) pair "
            "or a mapping with 'labels'"
        )
    if not isinstance(y, torch.Tensor) or not _is_inputs(x):
        raise LandscapeError(
            f"batch {index} of the data has inputs of type {type(x).__name__} and targets of type "
            f"{type(y).__name__}: the targets must be a tensor and the inputs a tensor, a tuple or "
            "a mapping of tensors"
        )
    return x, y


def as_batches(
    data: Split | Batches | Iterable[Batch],
    batch_size: int = 256,
    device: torch.device | str | None = None,
    sharded: bool = True,
) -> Batches:
    """`data` as `Batches`; a `Batches` is returned as it is.

    Args:
        data: a `Split`, a `Batches` or a re-iterable of batches.
        batch_size: the examples per batch of a `Split` (not used otherwise).
        device: where batches are moved (None: where they are).
        sharded: under torchrun, each rank takes its share; False: every rank takes all.

    Returns:
        The `Batches`.

    Examples:
        >>> import torch
        >>> batches = as_batches(Split(torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])), 3)
        >>> [len(y) for _, y in batches]
        [3, 1]
        >>> as_batches(batches) is batches
        True
    """
    if isinstance(data, Batches):
        return data
    return Batches(data, batch_size, device, sharded)
