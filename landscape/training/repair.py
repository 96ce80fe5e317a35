"""REPAIR for models without BatchNorm: each unit's statistics set to the parents' combination.

The method of Jordan, Sedghi, Saukh, Entezari & Neyshabur, "REPAIR: REnormalizing Permuted
Activations for Interpolation Repair", ICLR 2023.

Interpolating two aligned networks shrinks the variance of their units' pre-activations ("variance
collapse"). REPAIR rescales every unit of the interpolated model so that its pre-activation mean and
standard deviation on some examples are the same interpolation of the parents' statistics:

    target mean = (1 - a) mean_A + a mean_B,   target std = (1 - a) std_A + a std_B

(for a fusion of K models with weights w_k, the w-weighted averages of their statistics, all parents
aligned to the fused model).

The correction is the affine map a BatchNorm would apply, folded into the layer itself: the unit's
weights are scaled by `target std / std` and its bias becomes `(bias - mean) * target std / std +
target mean`. Layers are corrected in forward order, each measured after the ones before it were
corrected, so every corrected layer has exactly the promised statistics on those examples. The
corrected layers are the linear and convolution modules called once per forward, except the last one
(the logits). A model with BatchNorm gets the same effect from recomputing its statistics
(`landscape.training.bn.reset_bn`, `--reset-bn`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ..data.batches import Batch, as_batches
from ..data.split import Split
from ..errors import LandscapeError

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _channel_axis(module: nn.Module) -> int:
    """The axis of a layer's output that holds its units.

    Returns:
        -1 for a linear layer, 1 for a convolution.
    """
    return -1 if isinstance(module, nn.Linear) else 1


def repaired_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the linear and convolution modules REPAIR corrects, in call order.

    Those called exactly once on `x` (the model in eval mode), the last one called (the output
    layer) left out.

    Args:
        model: the model.
        x: example inputs (a tensor) for one forward pass.

    Returns:
        The modules' names.

    Raises:
        LandscapeError: a corrected layer without a bias (there is nothing to shift).

    Examples:
        >>> import torch
        >>> from landscape.models.zoo import MLP
        >>> repaired_layers(MLP((2,), 2, hidden=(3, 3)), torch.zeros(1, 2))
        ['features.0', 'features.2']
        >>> repaired_layers(MLP((2,), 2, hidden=(3,), bias=False), torch.zeros(1, 2))
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: REPAIR shifts each unit through its layer's bias, and ...
    """
    order: list[str] = []
    counts: dict[str, int] = {}
    names = {m: name for name, m in model.named_modules() if isinstance(m, LAYERS)}

    def hook(module: nn.Module, _inputs, _output) -> None:
        """Count the call and note the layer's first one."""
        name = names[module]
        counts[name] = counts.get(name, 0) + 1
        if counts[name] == 1:
            order.append(name)

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    layers = [name for name in order[:-1] if counts[name] == 1]
    modules = dict(model.named_modules())
    for name in layers:
        if modules[name].bias is None:
            raise LandscapeError(
                f"REPAIR shifts each unit through its layer's bias, and layer '{name}' has none "
                "(for a model with BatchNorm use `reset_bn` instead)"
            )
    return layers


@torch.no_grad()
def unit_statistics(
    model: nn.Module, data: Split | Iterable[Batch], layers: Sequence[str], batch_size: int = 256
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Mean and (population) standard deviation of each unit's outputs of the named layers.

    Over all examples (and positions, for a convolution) of `data`, the model in eval mode; its
    train/eval mode is restored afterwards.

    Args:
        model: the model.
        data: a `Split` or re-iterable of `(inputs, targets)` batches.
        layers: the names of the linear and convolution modules measured.
        batch_size: examples per forward pass (a `Split` only).

    Returns:
        {layer name: (mean, std)}, float64 tensors with one value per output unit.

    Examples:
        >>> import torch
        >>> from landscape.data.split import Split
        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 2))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0], [2.0]])), net[0].bias.zero_()
        >>> split = Split(torch.arange(4.0)[:, None], torch.zeros(4, dtype=torch.long))
        >>> mean, std = unit_statistics(net, split, ["0"])["0"]
        >>> mean.tolist(), [round(s, 4) for s in std.tolist()]  # std of 0..3: sqrt(1.25)
        ([1.5, 3.0], [1.118, 2.2361])
    """
    modules = dict(model.named_modules())
    sums: dict[str, list[torch.Tensor | float]] = {}

    def hook(name: str):
        """The forward hook that adds layer `name`'s outputs to its sums.

        Returns:
            The hook.
        """

        def record(module: nn.Module, _inputs, output: torch.Tensor) -> None:
            """Add the units' sums, sums of squares and counts of one output."""
            values = (
                output.detach()
                .movedim(_channel_axis(module), 0)
                .reshape(output.shape[_channel_axis(module)], -1)
            )
            values = values.double()
            acc = sums.setdefault(name, [0.0, 0.0, 0.0])
            acc[0] += values.sum(1)
            acc[1] += (values * values).sum(1)
            acc[2] += values.shape[1]

        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in layers]
    was = model.training
    model.eval()
    try:
        for x, _ in as_batches(data, batch_size, next(model.parameters()).device):
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    out = {}
    for name in layers:
        total, squares, count = sums[name]
        mean = total / count
        out[name] = mean, (squares / count - mean * mean).clamp_min(0).sqrt()
    return out


@torch.no_grad()
def repair(
    model: nn.Module,
    parents: Sequence[nn.Module],
    weights: Sequence[float],
    data: Split | Iterable[Batch],
    batch_size: int = 256,
) -> nn.Module:
    """A copy of `model` whose corrected layers' unit statistics are the parents' combination.

    `model` is the point `sum_k weights[k] parents[k]`; the statistics of its corrected layers'
    units on `data` are set to the same combination of the parents' (see the module docstring).

    Args:
        model: the interpolated or fused model (the parents' architecture).
        parents: the models it combines, aligned to it (on the line from A to B at a: `[A, B]`).
        weights: their weights (`[1 - a, a]`).
        data: a `Split` or re-iterable of `(inputs, targets)` batches (the repair examples).
        batch_size: examples per forward pass (a `Split` only).

    Returns:
        The corrected copy, in eval mode; `model` is not modified.

    Raises:
        LandscapeError: parents and weights of different lengths. A loader without batches and a
            corrected layer without a bias raise it too (the functions this calls).

    Examples:
        >>> import torch
        >>> from landscape.data.split import Split
        >>> from landscape.models.zoo import MLP
        >>> _ = torch.manual_seed(0)
        >>> a, b, mid = (MLP((2,), 2, hidden=(4,)) for _ in range(3))
        >>> state_b = b.state_dict()
        >>> _ = mid.load_state_dict({k: (v + state_b[k]) / 2 for k, v in a.state_dict().items()})
        >>> split = Split(torch.randn(32, 2), torch.zeros(32, dtype=torch.long))
        >>> fixed = repair(mid, [a, b], [0.5, 0.5], split)
        >>> stats = [unit_statistics(m, split, ["features.0"])["features.0"] for m in (fixed, a, b)]
        >>> [torch.allclose(s, (sa + sb) / 2) for s, sa, sb in zip(*stats)]  # means, stds
        [True, True]
    """
    first = next(iter(as_batches(data, batch_size, next(model.parameters()).device)))
    out = copy.deepcopy(model).eval()
    layers = repaired_layers(out, first[0])
    if len(parents) != len(weights):
        raise LandscapeError(f"REPAIR got {len(parents)} parents and {len(weights)} weights")
    ends = [unit_statistics(m, data, layers, batch_size) for m in parents]
    modules = dict(out.named_modules())
    for name in layers:
        mean, std = unit_statistics(out, data, [name], batch_size)[name]
        target_mean = sum(w * e[name][0] for w, e in zip(weights, ends))
        target_std = sum(w * e[name][1] for w, e in zip(weights, ends))
        scale = torch.where(std > 0, target_std / std.clamp_min(torch.finfo(std.dtype).tiny), 1.0)
        layer = modules[name]
        shape = (-1,) + (1,) * (layer.weight.ndim - 1)
        layer.weight.mul_(scale.view(shape).to(layer.weight.dtype))
        layer.bias.copy_(((layer.bias.double() - mean) * scale + target_mean).to(layer.bias.dtype))
    return out
