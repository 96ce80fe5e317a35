"""Example inputs of any kind: a tensor (the one positional argument), a tuple or list (the
positional arguments) or a dict (keyword arguments, e.g. `input_ids` and `attention_mask`). Every
tensor whose first axis has the batch's length is split along it; other values (flags, masks shared
by all examples) are passed unchanged to every call.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn
from torch.utils import _pytree as pytree

from landscape.errors import LandscapeError

from .export import call_arguments


def batch_length(x: object) -> int:
    """The number of examples in `x`: the first axis of its first tensor.

    Raises:
        LandscapeError: `x` holds no tensor with a batch axis.
    """
    for leaf in pytree.tree_leaves(x):
        if isinstance(leaf, torch.Tensor) and leaf.ndim >= 1:
            return leaf.shape[0]
    raise LandscapeError(
        "x holds no tensor with a batch axis (pass a tensor, a tuple of tensors or a dict of "
        "keyword arguments)"
    )


def take(x: object, start: int, stop: int) -> object:
    """Examples [start, stop) of `x` (tensors with the batch's length sliced, other values kept)."""
    n = batch_length(x)
    return pytree.tree_map(
        lambda v: (
            v[start:stop] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == n else v
        ),
        x,
    )


def repeat_first(x: object, k: int) -> object:
    """`k` copies of the first example of `x`."""
    n = batch_length(x)
    return pytree.tree_map(
        lambda v: (
            v[:1].expand(k, *v.shape[1:])
            if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == n
            else v
        ),
        x,
    )


def to_device(x: object, device: torch.device | str) -> object:
    """`x` with every tensor on `device`."""
    return pytree.tree_map(lambda v: v.to(device) if isinstance(v, torch.Tensor) else v, x)


def chunks(x: object, size: int) -> list[object]:
    """`x` in consecutive pieces of at most `size` examples, never a last piece of one example (code
    such as `.squeeze()` would drop its batch axis).
    """
    n = batch_length(x)
    bounds = [*range(0, n, size), n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return [take(x, a, b) for a, b in pairwise(bounds)]


def run(model: nn.Module, x: object) -> object:
    """`model` called on `x` (positional or keyword arguments as `x` says)."""
    args, kwargs = call_arguments(x)
    return model(*args, **kwargs)
