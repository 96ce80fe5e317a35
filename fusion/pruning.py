"""Structured pruning by norm: a narrower model without one layer's weakest units.

The units (neurons or filters) removed are those whose incoming weights have the smallest L1 norm
(Li, Kadav, Durdanovic, Samet, Graf, "Pruning Filters for Efficient ConvNets", ICLR 2017). OT fusion
of the dense model into the pruned one is the data-free post-processing of Singh & Jaggi, "Model
Fusion via Optimal Transport" (NeurIPS 2020), Section 5.2.

The pruned layer's units are read by the next linear or convolution layer in the model's
registration order (a plain chain, as in MLPs and VGG); a BatchNorm right after the layer loses the
same units.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from landscape.errors import LandscapeError

WEIGHTED = (nn.Linear, nn.Conv2d)


def prune_units(model: nn.Module, layer: str, fraction: float) -> nn.Module:
    """A copy of `model` without the `fraction` of `layer`'s units of smallest incoming L1 norm.

    Args:
        model: a network whose linear/convolution layers form a chain in registration order.
        layer: the name of the linear or convolution layer to prune (as in `model.named_modules()`).
        fraction: the share of its units removed, in [0, 1); at least one unit is kept.

    Returns:
        The pruned copy in eval mode (its `landscape_spec` records the pruning; an MLP's `hidden`
        widths are updated so that its checkpoint rebuilds).

    Raises:
        LandscapeError: for an unknown layer, a layer that is not linear/convolution, the last such
            layer (its units are the classes), a fraction outside [0, 1).

    Examples:
        The hidden unit with the smallest incoming weights goes, with its column of the next layer:

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> with torch.no_grad():
        ...     _ = model[0].weight.copy_(torch.tensor([[1.0, 1.0], [0.1, 0.0], [2.0, -2.0]]))
        ...     _ = model[2].weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
        >>> pruned = prune_units(model, "0", 1 / 3)
        >>> pruned[0].weight.tolist(), pruned[2].weight.tolist()
        ([[1.0, 1.0], [2.0, -2.0]], [[1.0, 3.0]])
    """
    if not 0 <= fraction < 1:
        raise LandscapeError(f"pruning fraction must be in [0, 1), got {fraction}")
    modules = dict(model.named_modules())
    if layer not in modules:
        raise LandscapeError(
            f"no layer {layer!r} in the model; its layers: "
            f"{', '.join(n for n, m in modules.items() if isinstance(m, WEIGHTED))}"
        )
    target = modules[layer]
    if not isinstance(target, WEIGHTED):
        raise LandscapeError(
            f"layer {layer!r} is a {type(target).__name__}, not a linear or convolution layer"
        )
    names = list(modules)
    after = names[names.index(layer) + 1 :]
    consumer = next((n for n in after if isinstance(modules[n], WEIGHTED)), None)
    if consumer is None:
        raise LandscapeError(f"layer {layer!r} is the output layer: its units are the classes")
    units = target.weight.shape[0]
    keep = _kept(target.weight, max(1, units - round(units * fraction)))
    pruned = copy.deepcopy(model)
    new = dict(pruned.named_modules())
    _set(pruned, layer, _cut_out(new[layer], keep))
    norm = new[after[0]] if isinstance(new[after[0]], nn.modules.batchnorm._BatchNorm) else None
    if norm is not None and norm.num_features == units:
        _set(pruned, after[0], _cut_norm(norm, keep))
    _set(pruned, consumer, _cut_in(new[consumer], keep, units, consumer))
    _record(pruned, model, layer, len(keep))
    return pruned.eval()


def _kept(weight: torch.Tensor, n: int) -> torch.Tensor:
    """Return the indices (ascending) of the `n` units of largest L1 norm; ties: the lower index."""
    norms = weight.detach().abs().reshape(weight.shape[0], -1).sum(1)
    order = sorted(range(len(norms)), key=lambda i: (-float(norms[i]), i))
    return torch.tensor(sorted(order[:n]))


def _cut_out(module: nn.Module, keep: torch.Tensor) -> nn.Module:
    """Return a copy of the layer with only the output units `keep`."""
    new = copy.deepcopy(module)
    new.weight = nn.Parameter(module.weight.detach()[keep].clone())
    if module.bias is not None:
        new.bias = nn.Parameter(module.bias.detach()[keep].clone())
    if isinstance(new, nn.Linear):
        new.out_features = len(keep)
    else:
        new.out_channels = len(keep)
    return new


def _cut_norm(norm: nn.Module, keep: torch.Tensor) -> nn.Module:
    """Return a copy of the BatchNorm with only the channels `keep`."""
    new = copy.deepcopy(norm)
    for name in ("weight", "bias"):
        if getattr(norm, name) is not None:
            setattr(new, name, nn.Parameter(getattr(norm, name).detach()[keep].clone()))
    for name in ("running_mean", "running_var"):
        if getattr(norm, name) is not None:
            setattr(new, name, getattr(norm, name)[keep].clone())
    new.num_features = len(keep)
    return new


def _cut_in(module: nn.Module, keep: torch.Tensor, units: int, name: str) -> nn.Module:
    """Return the consumer without the inputs of the removed units (after a flatten: all positions).

    Raises:
        LandscapeError: the consumer does not read a whole number of inputs per unit.
    """
    fan_in = module.weight.shape[1]
    if fan_in % units:
        raise LandscapeError(
            f"layer {name!r} reads {fan_in} inputs, not the {units} units of the pruned layer"
        )
    per = fan_in // units
    columns = (keep[:, None] * per + torch.arange(per)[None]).flatten()
    new = copy.deepcopy(module)
    new.weight = nn.Parameter(module.weight.detach()[:, columns].clone())
    if isinstance(new, nn.Linear):
        new.in_features = len(columns)
    else:
        new.in_channels = len(keep)
    return new


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` in `model` under the dotted `name`."""
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _record(pruned: nn.Module, model: nn.Module, layer: str, kept: int) -> None:
    """Note the pruning in the copy's spec."""
    spec = copy.deepcopy(getattr(model, "landscape_spec", None))
    if spec is None:
        return
    spec.setdefault("pruned", {})[layer] = kept
    if (
        spec.get("arch") == "mlp" and "arch_kwargs" in spec
    ):  # the widths as built, so that the checkpoint rebuilds
        spec["arch_kwargs"]["hidden"] = [
            m.out_features
            for n, m in pruned.named_modules()
            if isinstance(m, nn.Linear) and n.startswith("features.")
        ]
        spec["arch_kwargs"]["width"] = 1.0
    pruned.landscape_spec = spec
