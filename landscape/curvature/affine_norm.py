"""Eval-mode BatchNorm as the affine map it computes, for cheaper second derivatives.

In eval mode with running statistics, BatchNorm is y = (x - mu) / sqrt(var + eps) * gamma + beta
(Ioffe & Szegedy 2015, sec. 3.1, inference form): a per-channel scale and shift, linear in x and in
(gamma, beta). PyTorch differentiates its fused kernel twice through a general formula written for
batch statistics; the same function written as one multiply-add has a cheaper second backward pass
(measured in benchmarks/curvature_vs_peers.py) and the same first and second derivatives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def affine_batchnorm(norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """`norm(x)` for an eval-mode BatchNorm with running statistics, as scale * x + shift per
    channel (dim 1).
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
    """Within the block, every eval-mode BatchNorm of `model` that uses running statistics (exact
    PyTorch BatchNorm1d/2d/3d classes, no user subclasses) computes `affine_batchnorm`; yields how
    many were switched. The modules are restored on exit.
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
