"""Fuse K >= 2 models into one: vanilla (weighted) averaging, or OT fusion (Algorithm 1 of the
OT-fusion paper).

OT fusion starts from an estimate of the fused model (the anchor, by default the last model), aligns
every model to it, and returns the weighted average of the aligned parameters and BatchNorm
statistics (line 16). With `iterations > 1` the result becomes the next estimate (the paper's
iterative version for ResNets). The fused model has the anchor's architecture and widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from landscape.errors import LandscapeError, check_choice

from .alignment import aligned_state, check_options, prepare, with_state
from .batches import to_device
from .checks import check_all_finite, check_same_shapes, check_specs, fusion_weights
from .choices import METHODS
from .metrics import activation_moments


def average_states(
    states: Sequence[dict[str, torch.Tensor]],
    weights: Sequence[float],
    template: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Weighted average of floating-point entries; integer buffers (BatchNorm's batch count) from
    `template`.
    """
    out = {}
    for key, ref in template.items():
        if ref.is_floating_point():
            total = sum(w * s[key].double() for w, s in zip(weights, states))
            out[key] = total.to(ref.dtype)
        else:
            out[key] = ref.clone()
    return out


def fuse(
    models: Sequence[nn.Module],
    *,
    method: str = "ot",
    weights: Sequence[float] | None = None,
    mode: str = "acts",
    x: object | None = None,
    anchor: int = -1,
    iterations: int = 1,
    solver: str = "emd",
    reg: float = 0.01,
    marginals: str = "uniform",
    batch_size: int = 100,
    strict: bool = False,
    seed: int = 0,
    ground_metric: str = "euclidean",
    cost_norm: str = "none",
    heads: str = "permute",
    acts_at: str = "pre",
) -> nn.Module:
    """One model from `models`: their weighted average after aligning each to the anchor (method
    "ot", or "rebasin": Git Re-Basin permutations, `seed` ordering its weight matching), or without
    alignment (method "vanilla", equal shapes only). Returns a new model in eval mode.
    `ground_metric`, `cost_norm` and `heads`: as in `fusion.align`. Units the alignment graph cannot
    follow stay in place (averaged as in vanilla averaging) with a warning; `strict=True` makes that
    an error. `x` is a batch of inputs as `fusion.align` takes it (a tensor, a tuple of positional
    arguments or a dict of keyword arguments).
    """
    models = list(models)
    if len(models) < 2:
        raise LandscapeError(f"fusion needs at least two models, got {len(models)}")
    if not -len(models) <= anchor < len(models):
        raise LandscapeError(f"`anchor` {anchor} is out of range for {len(models)} models")
    if iterations < 1:
        raise LandscapeError(f"`iterations` must be at least 1, got {iterations}")
    w = fusion_weights(weights, len(models))
    template = models[anchor]
    if method == "vanilla":
        check_all_finite(models)
        check_specs(models)
        check_same_shapes(models)
        states = [{k: v.detach() for k, v in m.state_dict().items()} for m in models]
        return with_state(template, average_states(states, w, states[anchor % len(models)]))
    check_choice(method, METHODS, "fusion method")
    check_options(mode, x, solver, marginals, method, ground_metric, cost_norm, heads, acts_at)
    graphs = prepare(models, x, strict=strict, mode=mode, reference=anchor)
    estimate_graph = graphs[anchor]  # every estimate is the anchor's architecture and widths
    estimate = template
    for _ in range(iterations):
        moving = [(m, g) for m, g in zip(models, graphs) if m is not estimate]
        moments = {}
        if moving and (mode == "acts" or marginals == "importance"):
            xs = to_device(x, next(estimate.parameters()).device)
            found = activation_moments(
                [m for m, _ in moving],
                estimate,
                [g for _, g in moving],
                estimate_graph,
                xs,
                batch_size,
                acts_at,
            )
            moments = dict(zip((id(m) for m, _ in moving), found))
        states = [
            aligned_state(
                m,
                estimate,
                g,
                estimate_graph,
                mode=mode,
                moments=moments.get(id(m)),
                solver=solver,
                reg=reg,
                marginals=marginals,
                method=method,
                seed=seed,
                ground_metric=ground_metric,
                cost_norm=cost_norm,
                heads=heads,
            )
            for m, g in zip(models, graphs)
        ]
        estimate = with_state(template, average_states(states, w, template.state_dict()))
    return estimate
