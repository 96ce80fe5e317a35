"""Recompute BatchNorm running statistics on data: the reset after fusion or interpolation.

For networks with BatchNorm, recomputing its statistics is the repair of an interpolated or fused
model that Jordan et al., "REPAIR: REnormalizing Permuted Activations for Interpolation Repair",
ICLR 2023, start from.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .. import dist
from ..data.batches import Batch, as_batches
from ..data.split import Split
from ..models.outputs import call

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether the model has any BatchNorm layer with running statistics.

    Args:
        model: the model.

    Returns:
        True when a BatchNorm1d/2d/3d of it tracks running statistics.

    Examples:
        >>> from torch import nn
        >>> has_batchnorm(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
        True
        >>> has_batchnorm(nn.BatchNorm1d(2, track_running_stats=False))
        False
    """
    return any(isinstance(m, _BN) and m.track_running_stats for m in model.modules())


@torch.no_grad()
def reset_bn(model: nn.Module, data: Split | Iterable[Batch], batch_size: int = 256) -> nn.Module:
    """Replace every BatchNorm's running mean and variance by their batch averages over `data`.

    Same rule as torch.optim.swa_utils.update_bn (cumulative average over batches, the variance of
    each batch unbiased); under torch.distributed the per-rank averages are combined weighted by the
    number of batches. Each layer's momentum is restored afterwards.

    Args:
        model: the model, changed in place.
        data: a `Split` or a re-iterable of batches; its targets are not used.
        batch_size: examples per batch of a `Split` (the statistics are per batch).

    Returns:
        `model`, in eval mode.

    Examples:
        >>> import torch
        >>> from landscape.data.split import Split
        >>> bn = torch.nn.BatchNorm1d(1)
        >>> x = torch.tensor([[0.0], [2.0], [4.0], [6.0]])
        >>> split = Split(x, torch.zeros(4, dtype=torch.long))
        >>> reset_bn(bn, split, batch_size=2).training
        False
        >>> bn.running_mean, bn.running_var  # batches {0, 2}, {4, 6}: means 1, 5; variances 2, 2
        (tensor([3.]), tensor([2.]))
    """
    layers = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    if not layers:
        return model.eval()
    device = next(model.parameters()).device
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    n_batches = 0
    for x, _ in as_batches(data, batch_size, device):
        call(model, x)
        n_batches += 1
    model.eval()
    for m, momentum in zip(layers, saved):
        m.momentum = momentum
    if dist.active():
        count = dist.all_reduce_sum(
            torch.tensor(float(n_batches), dtype=torch.float64, device=device)
        )
        for m in layers:
            for buf in (m.running_mean, m.running_var):
                weighted = buf.double() * n_batches
                buf.copy_((dist.all_reduce_sum(weighted) / count.clamp_min(1)).to(buf.dtype))
    return model
