"""Example inputs of any kind, split into batches and moved between devices.

An input is a tensor (the one positional argument), a tuple or list (the positional arguments) or a
dict (keyword arguments, e.g. `input_ids` and `attention_mask`). Every tensor whose first axis has
the batch's length is split along it; other values (flags, masks shared by all examples) are passed
unchanged to every call.
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

    Args:
        x: a tensor, or a tuple, list or dict holding tensors.

    Returns:
        The length of the first axis of the first tensor (of at least one dimension) in `x`.

    Raises:
        LandscapeError: `x` holds no tensor with a batch axis.

    Examples:
        >>> import torch
        >>> batch_length({"input_ids": torch.zeros(5, 12), "flag": True})
        5
    """
    for leaf in pytree.tree_leaves(x):
        if isinstance(leaf, torch.Tensor) and leaf.ndim >= 1:
            return leaf.shape[0]
    raise LandscapeError(
        "x holds no tensor with a batch axis (pass a tensor, a tuple of tensors or a dict of "
        "keyword arguments)"
    )


def take(x: object, start: int, stop: int) -> object:
    """Examples [start, stop) of `x`: tensors with the batch's length sliced, other values kept.

    Args:
        x: the batch (a tensor, tuple, list or dict).
        start: the first example taken.
        stop: one past the last example taken.

    Returns:
        `x` of the same structure holding those examples.

    Examples:
        >>> import torch
        >>> part = take((torch.arange(6).reshape(3, 2), torch.ones(4)), 1, 3)
        >>> part[0].tolist(), part[1].shape
        ([[2, 3], [4, 5]], torch.Size([4]))
    """
    n = batch_length(x)
    return pytree.tree_map(
        lambda v: (
            v[start:stop] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == n else v
        ),
        x,
    )


def repeat_first(x: object, k: int) -> object:
    """`k` copies of the first example of `x`.

    Args:
        x: the batch (a tensor, tuple, list or dict).
        k: the number of copies.

    Returns:
        `x` of the same structure with `k` examples, each the first one.

    Examples:
        >>> import torch
        >>> repeat_first(torch.tensor([[1, 2], [3, 4]]), 3).tolist()
        [[1, 2], [1, 2], [1, 2]]
    """
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
    """`x` with every tensor on `device`.

    Args:
        x: the batch (a tensor, tuple, list or dict).
        device: where its tensors go.

    Returns:
        `x` of the same structure, its tensors on `device`.

    Examples:
        >>> import torch
        >>> to_device({"x": torch.ones(1)}, "cpu")["x"].device
        device(type='cpu')
    """
    return pytree.tree_map(lambda v: v.to(device) if isinstance(v, torch.Tensor) else v, x)


def chunks(x: object, size: int) -> list[object]:
    """`x` in consecutive pieces of at most `size` examples, never a last piece of one example.

    A last piece of one example is joined to the one before it: code such as `.squeeze()` would drop
    its batch axis.

    Args:
        x: the batch (a tensor, tuple, list or dict).
        size: the most examples in a piece (the piece before a lone last example has one more).

    Returns:
        The pieces, in order.

    Examples:
        >>> import torch
        >>> [len(piece) for piece in chunks(torch.zeros(7), 3)]
        [3, 4]
    """
    n = batch_length(x)
    bounds = [*range(0, n, size), n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return [take(x, a, b) for a, b in pairwise(bounds)]


def run(model: nn.Module, x: object) -> object:
    """`model` called on `x`, with positional or keyword arguments as `x` says.

    Args:
        model: the model.
        x: a tensor (the one positional argument), a tuple or list (the positional arguments) or a
            dict (keyword arguments).

    Returns:
        Whatever the model returns.

    Examples:
        >>> import torch
        >>> run(torch.nn.Linear(2, 1), torch.zeros(4, 2)).shape
        torch.Size([4, 1])
    """
    args, kwargs = call_arguments(x)
    return model(*args, **kwargs)
