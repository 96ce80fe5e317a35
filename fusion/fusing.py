"""Fuse K >= 2 models into one: vanilla (weighted) averaging, or OT fusion.

OT fusion is Algorithm 1 of Singh & Jaggi, "Model Fusion via Optimal Transport" (NeurIPS 2020).

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
    """Weighted average of the floating-point entries of `states`, computed in float64.

    Args:
        states: the models' states (equal keys and shapes).
        weights: one weight per state.
        template: a state with the same keys: the result's dtypes, and its integer buffers
            (BatchNorm's batch count), which are copied rather than averaged.

    Returns:
        The averaged state.

    Examples:
        >>> import torch
        >>> states = [{"w": torch.tensor([1.0]), "n": torch.tensor(3)},
        ...           {"w": torch.tensor([3.0]), "n": torch.tensor(5)}]
        >>> out = average_states(states, [0.75, 0.25], states[1])
        >>> out["w"].item(), out["n"].item()
        (1.5, 5)
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
    """One model from `models`: their weighted average, each first aligned to the anchor.

    OT fusion (Singh & Jaggi, "Model Fusion via Optimal Transport", NeurIPS 2020, Algorithm 1)
    starts from the anchor as the estimate of the fused model, aligns every model to it
    (`fusion.align`), and averages the aligned parameters and BatchNorm statistics with `weights`;
    with `iterations > 1` the result is the next estimate. Method "rebasin" aligns with Git Re-Basin
    permutations instead, and "vanilla" averages without aligning (equal shapes only). Units the
    alignment graph cannot follow stay in place (averaged as in vanilla averaging) with a warning.

    Args:
        models: two or more models of one architecture (widths may differ for "ot").
        method: "ot", "rebasin" or "vanilla".
        weights: one weight per model, normalised to sum to one; None: uniform.
        mode: "acts" (activations on `x`) or "wts" (incoming weights).
        x: a batch of inputs as `fusion.align` takes it (a tensor, a tuple of positional arguments
            or a dict of keyword arguments); needed for "acts" and importance marginals.
        anchor: the index of the model that is the first estimate (negative: from the end); the
            result has its architecture and widths.
        iterations: how many times the fused model is fed back as the estimate, in all.
        solver: "emd" (exact) or "sinkhorn".
        reg: Sinkhorn's regularisation, relative to the largest cost of a layer.
        marginals: "uniform" or "importance".
        batch_size: examples per forward pass when reading activations.
        strict: raise instead of leaving units the graph cannot follow in place.
        seed: the random group order of Re-Basin's weight matching.
        ground_metric: as in `fusion.align`.
        cost_norm: as in `fusion.align`.
        heads: as in `fusion.align`.
        acts_at: as in `fusion.align`: activations before ("pre") or after ("post") the
            nonlinearity.

    Returns:
        A new model in eval mode (the inputs are not modified).

    Raises:
        LandscapeError: fewer than two models, an anchor out of range, fewer than one iteration,
            `acts_at` "post" with vanilla averaging, an unknown method (and, from the checks, bad
            options or models that cannot be fused).

    Examples:
        Vanilla averaging of two linear layers, and OT fusion of a model with a permuted copy of
        itself, which gives the model back:

        >>> import torch
        >>> from torch import nn
        >>> a, b = nn.Linear(1, 1), nn.Linear(1, 1)
        >>> with torch.no_grad():
        ...     _ = a.weight.fill_(1.0), b.weight.fill_(3.0), a.bias.zero_(), b.bias.zero_()
        >>> fuse([a, b], method="vanilla", weights=[3, 1]).weight.item()
        1.5
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> copy = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> order = torch.tensor([2, 0, 3, 1])
        >>> state = {"0.weight": net[0].weight[order], "0.bias": net[0].bias[order],
        ...          "2.weight": net[2].weight[:, order], "2.bias": net[2].bias}
        >>> _ = copy.load_state_dict(state)
        >>> fused = fuse([copy, net], mode="wts", x=torch.randn(2, 3))
        >>> torch.equal(fused[0].weight, net[0].weight)
        True
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
        if acts_at != "pre":
            raise LandscapeError(
                f"`acts_at` {acts_at!r} has no effect: vanilla averaging reads no activations"
            )
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
