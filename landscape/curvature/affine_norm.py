"""Eval-mode BatchNorm as the affine map it computes, for cheaper second derivatives.

PyTorch differentiates its fused BatchNorm kernel twice through a general formula written for
batch statistics; the same function written as one multiply-add (`affine_batchnorm`) has a
cheaper second backward pass (measured in benchmarks/curvature_vs_peers.py) and the same first
and second derivatives. `batchnorm_as_affine` switches a model's layers to it for a while.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def affine_batchnorm(norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """`norm(x)` for an eval-mode BatchNorm with running statistics, as one multiply-add.

    In eval mode with running statistics, BatchNorm is y = (x - mu) / sqrt(var + eps) * gamma + beta
    (Ioffe & Szegedy, "Batch normalization: accelerating deep network training by reducing internal
    covariate shift", ICML 2015, sec. 3.1, inference form): a per-channel scale and shift, linear in
    x and in (gamma, beta). Here y = x * scale + shift per channel (dim 1), with scale = gamma /
    sqrt(var + eps) and shift = beta - mu * scale; a missing gamma or beta counts as 1 or 0.

    Args:
        norm: a BatchNorm1d/2d/3d whose `running_mean` and `running_var` are set.
        x: its input, channels along dim 1.

    Returns:
        The normalised `x`, same shape.

    Examples:
        >>> import torch
        >>> norm = torch.nn.BatchNorm1d(2).eval()
        >>> norm.running_mean.copy_(torch.tensor([1.0, -1.0]))
        tensor([ 1., -1.])
        >>> norm.running_var.fill_(4.0)
        tensor([4., 4.])
        >>> x = torch.tensor([[5.0, 1.0]])
        >>> y = affine_batchnorm(norm, x)
        >>> y.round(decimals=4).tolist()  # (x - mu) / sqrt(4 + eps), gamma = 1, beta = 0
        [[2.0, 1.0]]
        >>> torch.allclose(y, norm(x))
        True
    """
    scale = torch.rsqrt(norm.running_var + norm.eps)
    shift = -norm.running_mean * scale
    if norm.weight is not None:
        scale = scale * norm.weight
        shift = shift * norm.weight
    if norm.bias is not None:
        shift = shift + norm.bias
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * scale.view(shape) + shift.view(shape)


@contextlib.contextmanager
def batchnorm_as_affine(model: nn.Module) -> Iterator[int]:
    """Make every eval-mode BatchNorm of `model` compute `affine_batchnorm` within the block.

    Only the exact PyTorch classes BatchNorm1d/2d/3d (no user subclasses) in eval mode with running
    statistics are switched, and only those whose `forward` is not already overridden on the
    instance; the modules are restored on exit.

    Args:
        model: the model whose BatchNorm layers are switched.

    Yields:
        How many BatchNorm layers were switched.

    Examples:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)).eval()
        >>> x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
        >>> with batchnorm_as_affine(model) as switched:
        ...     affine = model(x)
        >>> switched
        1
        >>> torch.allclose(affine, model(x))
        True
    """
    switched = [
        m
        for m in model.modules()
        if type(m) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
        and not m.training
        and m.running_mean is not None
        and "forward" not in vars(m)
    ]
    for m in switched:
        m.forward = lambda x, m=m: affine_batchnorm(m, x)
    try:
        yield len(switched)
    finally:
        for m in switched:
            del m.forward
