"""Recompute BatchNorm running statistics on data (REPAIR-style reset after fusion or
interpolation).
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
    """Whether the model has any BatchNorm layer with running statistics."""
    return any(isinstance(m, _BN) and m.track_running_stats for m in model.modules())


@torch.no_grad()
def reset_bn(model: nn.Module, data: Split | Iterable[Batch], batch_size: int = 256) -> nn.Module:
    """Replace every BatchNorm's running mean/var by the average of its batch statistics over
    `data`.

    Same rule as torch.optim.swa_utils.update_bn (cumulative average over batches); under
    torch.distributed the per-rank averages are combined weighted by the number of batches. Returns
    the model in eval mode.
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
