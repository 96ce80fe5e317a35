"""Align a model to an estimate of the fused model: one transport map per unit group.

Each map is applied to every parameter that is indexed by the group's units (Singh & Jaggi, "Model
Fusion via Optimal Transport", NeurIPS 2020, Algorithm 1, lines 8-14).

Every parameter axis the alignment graph binds to units is moved by its groups' maps: "out" axes
(one value per unit) by the barycentric rows, "in" axes (consumed units) by the columns (see
`fusion/transport.py`).

Order (weight mode): Algorithm 1 aligns a layer's incoming weights with the previous layer's map
before computing its own. In the graph a group is solved just before the first layer that reads it,
from its producers seen so far (their inputs are aligned by then). For plain networks that is every
producer; a residual stream is solved from the layers that open it (the stem, or a block's second
conv and projection shortcut), because the later blocks that add into it read the stream themselves.
In activation mode every group is solved independently, from the activations of all its producers
(before the nonlinearity, or after it with `acts_at="post"`: `fusion/metrics.py`).

With `method="rebasin"` the maps are Git Re-Basin's permutations instead (`fusion/rebasin.py`):
weight matching by coordinate descent over all groups, or activation matching by correlation.

Attention heads (`heads="permute"`) are matched at two levels, as Imfeld et al. ("Transformer Fusion
with Optimal Transport", ICLR 2024) treat them: a head is a block of units that attention never
mixes with another head, so a permutation of whole heads (each head's query, key and value units,
and the output projection's input columns, moved together) composed with permutations within each
head keeps the function. The heads are assigned first: the cost of matching head i of the model with
head j of the estimate is the within-head OT cost, the optimal within-head matching of their
query/key units plus that of their value units, compared by incoming weights (inputs already
aligned); the head assignment is the linear assignment on those costs. The model's heads are then
moved into their places, and every group is solved again as above; in activation mode the units
within heads are then matched by their incoming weights.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from landscape.errors import LandscapeError, check_choice
from landscape.spec import spec_of

from .batches import batch_length, repeat_first, take, to_device
from .checks import check_all_finite, check_same_graph, check_specs
from .choices import ACTS_AT, ALIGNERS, COST_NORMS, GROUND_METRICS, HEADS, MARGINALS, MODES, SOLVERS
from .graph import AlignmentGraph, FrozenUnitsWarning, build_graph
from .heads import interchangeable, permute_heads
from .metrics import Moments, activation_moments, normalise_cost, weight_cost, weight_rows
from .rebasin import activation_matching, weight_matching
from .transport import Map, move_axis, normalised, plan, uniform


def check_options(
    mode: str,
    x: object | None,
    solver: str,
    marginals: str,
    method: str = "ot",
    ground_metric: str = "euclidean",
    cost_norm: str = "none",
    heads: str = "permute",
    acts_at: str = "pre",
) -> None:
    """Raise a one-line error for an unknown or inapplicable option, or missing inputs.

    Args:
        mode: "acts" or "wts".
        x: the inputs, or None.
        solver: "emd" or "sinkhorn".
        marginals: "uniform" or "importance".
        method: "ot" or "rebasin" (which takes none of the OT options but their defaults).
        ground_metric: "euclidean", "sqeuclidean" or "cosine".
        cost_norm: "none", "max", "median" or "log".
        heads: "permute" or "fixed".
        acts_at: "pre" or "post"; "post" only where activations are read.

    Raises:
        LandscapeError: the first unknown option, OT options given to Re-Basin, `acts_at` "post"
            where no activations are read, or no `x` where they are.

    Examples:
        >>> check_options("acts", [0.0], "emd", "uniform", acts_at="post")
        >>> check_options("wts", None, "emd", "uniform", acts_at="post")
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: `acts_at` 'post' has no effect: no activations are read ...
    """
    check_choice(ground_metric, GROUND_METRICS, "ground metric")
    check_choice(cost_norm, COST_NORMS, "cost normalisation")
    check_choice(method, ALIGNERS, "alignment method")
    check_choice(heads, HEADS, "head handling")
    if method == "rebasin" and (solver, marginals, ground_metric, cost_norm) != (
        "emd",
        "uniform",
        "euclidean",
        "none",
    ):
        raise LandscapeError(
            "Git Re-Basin finds permutations by linear assignment: the OT solver, marginals, "
            "ground metric and cost normalisation do not apply (leave them at their defaults)"
        )
    check_choice(mode, MODES, "alignment mode")
    check_choice(solver, SOLVERS, "OT solver")
    check_choice(marginals, MARGINALS, "marginals")
    check_choice(acts_at, ACTS_AT, "`acts_at`")
    if acts_at != "pre" and mode != "acts" and marginals != "importance":
        raise LandscapeError(
            f"`acts_at` {acts_at!r} has no effect: no activations are read (they are with `mode` "
            "acts or `marginals` importance)"
        )
    if x is None and (mode == "acts" or marginals == "importance"):
        raise LandscapeError(
            "activation-based alignment and importance marginals need x, a batch of inputs"
        )


def _example(models: Sequence[nn.Module], x: object | None, mode: str) -> object:
    """Return two inputs to trace with: from `x` (repeated if one), else zeros of the spec's shape.

    Raises:
        LandscapeError: no `x`, and the first model's spec records no input shape.
    """
    device = next(models[0].parameters()).device
    if x is not None:
        x = to_device(x, device)
        return take(x, 0, 2) if batch_length(x) > 1 else repeat_first(x, 2)
    spec = spec_of(models[0])
    shape = None if spec is None else spec.input_shape
    if shape is None:
        raise LandscapeError(
            f"mode={mode!r} needs an example input x, only to read the model's graph (one forward "
            "pass): pass x, a batch of inputs (a tensor, a tuple of positional arguments or a dict "
            "of keyword arguments)"
        )
    return torch.zeros(2, *shape, device=device)


def prepare(
    models: Sequence[nn.Module],
    x: object | None,
    *,
    strict: bool = False,
    mode: str = "wts",
    reference: int = -1,
) -> list[AlignmentGraph]:
    """Check that the models can be aligned to each other and return each one's alignment graph.

    The graphs have the same structure, each with its own widths; heads are listed only where every
    model keeps its function when they trade places. Frozen units are warned about once
    (`FrozenUnitsWarning`), for the `reference` model.

    Args:
        models: the models.
        x: inputs to trace with (two are used), or None: zeros of the spec's input shape.
        strict: raise instead of freezing units the graph cannot follow.
        mode: the alignment mode, for the message when there is nothing to trace with.
        reference: the index of the model whose frozen units are warned about.

    Returns:
        One alignment graph per model.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> graphs = prepare([nn.Linear(3, 4), nn.Linear(3, 4)], torch.zeros(2, 3))
        >>> [g.groups[g.output_group].size for g in graphs]
        [4, 4]
    """
    check_all_finite(models)
    check_specs(models)
    example = _example(models, x, mode)
    graphs = [build_graph(m, example, strict=strict, warn=False) for m in models]
    check_same_graph(graphs)
    graphs = interchangeable(models, graphs, example)
    messages = list(graphs[reference].frozen)
    for message in messages:
        warnings.warn(f"fusion: {message}", FrozenUnitsWarning, stacklevel=3)
    return graphs


def _marginals(
    cost: np.ndarray, mom: Moments | None, marginals: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return the masses of the model's and the estimate's units: uniform or by importance."""
    if marginals == "importance" and mom is not None:
        return normalised(mom.importance_model.cpu().numpy()), normalised(
            mom.importance_estimate.cpu().numpy()
        )
    return uniform(cost.shape[0]), uniform(cost.shape[1])


def transport_maps(
    state: dict[str, torch.Tensor],
    estimate_state: dict[str, torch.Tensor],
    graph: AlignmentGraph,
    estimate_graph: AlignmentGraph,
    *,
    mode: str = "acts",
    moments: dict[int, Moments] | None = None,
    solver: str = "emd",
    reg: float = 0.01,
    marginals: str = "uniform",
    ground_metric: str = "euclidean",
    cost_norm: str = "none",
) -> dict[int, Map]:
    """One transport map per movable group, from a model's units to the estimate's.

    In activation mode, groups whose activations no module returns are aligned by their incoming
    weights (after every other group); groups with nothing to compare keep their units in place. In
    weight mode the groups are solved in the order of the module docstring.

    Args:
        state: the model's state dict.
        estimate_state: the estimate's.
        graph: the model's alignment graph.
        estimate_graph: the estimate's.
        mode: "acts" or "wts".
        moments: per group, the activation statistics (`fusion.metrics.activation_moments`); needed
            for "acts" and importance marginals.
        solver: "emd" or "sinkhorn".
        reg: Sinkhorn's regularisation, relative to the largest cost of a layer.
        marginals: "uniform" or "importance".
        ground_metric: the OT reference code's cost between units (`fusion.metrics.ground_cost`).
        cost_norm: its rescaling of the cost (`fusion.metrics.normalise_cost`).

    Returns:
        Group index -> `Map`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> anchor = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> order = torch.tensor([2, 0, 3, 1])
        >>> with torch.no_grad():
        ...     _ = model[0].weight.copy_(anchor[0].weight[order])
        ...     _ = model[0].bias.copy_(anchor[0].bias[order])
        ...     _ = model[2].weight.copy_(anchor[2].weight[:, order])
        ...     _ = model[2].bias.copy_(anchor[2].bias)
        >>> graph = build_graph(anchor, torch.zeros(2, 3))
        >>> model_state, anchor_state = model.state_dict(), anchor.state_dict()
        >>> maps = transport_maps(model_state, anchor_state, graph, graph, mode="wts")
        >>> maps[1].index.tolist()
        [1, 3, 0, 2]
    """
    device = next(iter(estimate_state.values())).device
    maps: dict[int, Map] = {}

    def solve(gid: int, layers: Sequence[int], by_weights: bool) -> None:
        mom = moments.get(gid) if moments is not None else None
        if not by_weights:
            if mom is None:
                return
            cost = mom.cost(ground_metric)
        else:
            if not layers:
                return
            cost = weight_cost(
                weight_rows(state, graph, gid, [graph.layers[i] for i in layers], maps),
                weight_rows(
                    estimate_state,
                    estimate_graph,
                    gid,
                    [estimate_graph.layers[i] for i in layers],
                    None,
                ),
                ground_metric,
            )
        cost = normalise_cost(cost, cost_norm)
        a, b = _marginals(cost, mom, marginals)
        maps[gid] = Map.from_plan(plan(cost, a, b, solver, reg), device)

    movable = [gid for gid, g in enumerate(graph.groups) if not g.fixed]
    if mode == "acts":
        for gid in movable:
            solve(gid, (), by_weights=False)
        for gid in (
            movable
        ):  # units whose activations no module returns (nn.MultiheadAttention's projections)
            if gid not in maps:
                solve(gid, _producer_calls(graph, gid), by_weights=True)
        return maps
    seen: dict[int, list[int]] = {gid: [] for gid in movable}
    solved: set[int] = set()
    weights: set[str] = set()
    for i, layer in enumerate(graph.layers):
        for seg in layer.ins:
            if seg.group in seen and seg.group not in solved:
                solved.add(seg.group)
                solve(seg.group, seen[seg.group], by_weights=True)
        if layer.weight in weights:  # a layer called again: its rows are already there
            continue
        weights.add(layer.weight)
        for seg in layer.out:
            if seg.group in seen and i not in seen[seg.group]:
                seen[seg.group].append(i)
    for gid in movable:
        if gid not in solved:
            solve(gid, seen[gid], by_weights=True)
    return maps


def _producer_calls(graph: AlignmentGraph, gid: int) -> list[int]:
    """Return the indices of the first call of each layer that produces units of group `gid`."""
    seen: dict[str, int] = {}
    for i, layer in enumerate(graph.layers):
        if any(seg.group == gid for seg in layer.out):
            seen.setdefault(layer.weight, i)
    return list(seen.values())


def head_orders(
    state: dict[str, torch.Tensor],
    estimate_state: dict[str, torch.Tensor],
    graph: AlignmentGraph,
    estimate_graph: AlignmentGraph,
    maps: dict[int, Map],
) -> list[list[int]]:
    """For each attention of `graph.heads`, which of the model's heads goes to each estimate head.

    `order[j] = i`: head j of the result is the model's head i, by linear assignment on the
    within-head OT cost (see the module docstring).

    Args:
        state: the model's state dict.
        estimate_state: the estimate's.
        graph: the model's alignment graph.
        estimate_graph: the estimate's.
        maps: the maps that align the heads' inputs.

    Returns:
        One order per attention.

    Examples:
        One layer whose two heads of two units each are swapped in the model:

        >>> import torch
        >>> from fusion.graph import AlignmentGraph, Group, Layer, Segment
        >>> groups = (Group(2, False, ("q",), ()), Group(2, False, ("q",), ()))
        >>> q = Layer("q", "linear", "q.weight", None, 0, 1, (Segment(0), Segment(1)), ())
        >>> graph = AlignmentGraph((q,), groups, (), -1, -1, heads=(((0,), (1,)),))
        >>> w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
        >>> swapped = torch.cat([w[2:], w[:2]])
        >>> head_orders({"q.weight": swapped}, {"q.weight": w}, graph, graph, {})
        [[1, 0]]
    """
    from scipy.optimize import linear_sum_assignment

    def rows(
        st: dict[str, torch.Tensor], g: AlignmentGraph, gid: int, mp: dict[int, Map] | None
    ) -> torch.Tensor:
        return weight_rows(st, g, gid, [g.layers[i] for i in _producer_calls(g, gid)], mp)

    orders = []
    for mine, theirs in zip(graph.heads, estimate_graph.heads):
        model_rows = [[rows(state, graph, gid, maps) for gid in head] for head in mine]
        estimate_rows = [
            [rows(estimate_state, estimate_graph, gid, None) for gid in head] for head in theirs
        ]
        cost = np.zeros((len(mine), len(theirs)))
        for i, j in np.ndindex(cost.shape):
            for r, e in zip(model_rows[i], estimate_rows[j]):
                c = weight_cost(r, e)
                cost[i, j] += c[linear_sum_assignment(c)].sum()
        model_heads, estimate_heads = linear_sum_assignment(cost)
        orders.append([int(i) for _, i in sorted(zip(estimate_heads, model_heads))])
    return orders


def apply_maps(
    state: dict[str, torch.Tensor], graph: AlignmentGraph, maps: dict[int, Map]
) -> dict[str, torch.Tensor]:
    """A copy of `state` with every unit-indexed axis moved into the estimate's basis.

    Args:
        state: the model's parameters and buffers.
        graph: the model's own alignment graph.
        maps: the transport map of each group that moves.

    Returns:
        The moved state, in the original dtypes.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> anchor = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> order = torch.tensor([2, 0, 3, 1])
        >>> with torch.no_grad():
        ...     _ = model[0].weight.copy_(anchor[0].weight[order])
        ...     _ = model[0].bias.copy_(anchor[0].bias[order])
        ...     _ = model[2].weight.copy_(anchor[2].weight[:, order])
        ...     _ = model[2].bias.copy_(anchor[2].bias)
        >>> graph = build_graph(anchor, torch.zeros(2, 3))
        >>> moved = apply_maps(model.state_dict(), graph, {1: Map.from_index([1, 3, 0, 2])})
        >>> torch.equal(moved["0.weight"], anchor[0].weight)
        True
    """
    sizes = [g.size for g in graph.groups]
    out = dict(state)
    for b in graph.bindings:
        if b.name in out and any(seg.group in maps for seg in b.segments):
            out[b.name] = move_axis(out[b.name], b.axis, b.segments, b.role, maps, sizes)
    return {k: v.to(state[k].dtype) if v is not state[k] else v for k, v in out.items()}


def with_state(template: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A deep copy of `template` (its class and landscape_spec) holding `state`, in eval mode.

    Args:
        template: the model copied.
        state: the state dict the copy loads.

    Returns:
        The copy.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> state = {"weight": torch.ones(1, 2), "bias": torch.zeros(1)}
        >>> with_state(nn.Linear(2, 1), state)(torch.tensor([[1.0, 2.0]])).item()
        3.0
    """
    model = copy.deepcopy(template)
    model.load_state_dict(state)
    return model.eval()


def aligned_state(
    model: nn.Module,
    estimate: nn.Module,
    graph: AlignmentGraph,
    estimate_graph: AlignmentGraph,
    *,
    mode: str,
    moments: dict[int, Moments] | None,
    solver: str,
    reg: float,
    marginals: str,
    method: str = "ot",
    seed: int = 0,
    ground_metric: str = "euclidean",
    cost_norm: str = "none",
    heads: str = "permute",
) -> dict[str, torch.Tensor]:
    """`model`'s state moved into `estimate`'s basis (the estimate's own state is returned as is).

    By transport maps (`method="ot"`; with `heads="permute"` whole attention heads are assigned
    first, see the module docstring) or Git Re-Basin permutations (`"rebasin"`).

    Args:
        model: the model to align.
        estimate: the estimate of the fused model.
        graph: the model's alignment graph.
        estimate_graph: the estimate's.
        mode: "acts" or "wts".
        moments: the model's activation statistics against the estimate's, or None.
        solver: "emd" or "sinkhorn".
        reg: Sinkhorn's regularisation, relative to the largest cost of a layer.
        marginals: "uniform" or "importance".
        method: "ot" or "rebasin".
        seed: the random group order of Re-Basin's weight matching.
        ground_metric: OT's cost between units.
        cost_norm: OT's rescaling of the cost.
        heads: "permute" or "fixed".

    Returns:
        The aligned state dict.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> anchor = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> order = torch.tensor([2, 0, 3, 1])
        >>> with torch.no_grad():
        ...     _ = model[0].weight.copy_(anchor[0].weight[order])
        ...     _ = model[0].bias.copy_(anchor[0].bias[order])
        ...     _ = model[2].weight.copy_(anchor[2].weight[:, order])
        ...     _ = model[2].bias.copy_(anchor[2].bias)
        >>> graph = build_graph(anchor, torch.zeros(2, 3))
        >>> state = aligned_state(model, anchor, graph, graph, mode="wts", moments=None,
        ...                       solver="emd", reg=0.01, marginals="uniform")
        >>> torch.equal(state["2.weight"], anchor[2].weight)
        True
    """
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if model is estimate:
        return state
    estimate_state = {k: v.detach() for k, v in estimate.state_dict().items()}
    if method == "rebasin" and mode == "wts":
        names = {name for name, _ in model.named_parameters()}
        maps, _ = weight_matching(state, estimate_state, graph, estimate_graph, names, seed=seed)
        return apply_maps(state, graph, maps)
    if method == "rebasin":
        maps = activation_matching(
            moments or {}, graph, estimate_graph, next(iter(estimate_state.values())).device
        )
        return apply_maps(state, graph, maps)
    options = {
        "mode": mode,
        "solver": solver,
        "reg": reg,
        "marginals": marginals,
        "ground_metric": ground_metric,
        "cost_norm": cost_norm,
    }
    maps = transport_maps(state, estimate_state, graph, estimate_graph, moments=moments, **options)
    if heads == "permute" and graph.heads:
        orders = head_orders(state, estimate_state, graph, estimate_graph, maps)
        if any(order != sorted(order) for order in orders):
            state = permute_heads(state, graph, orders)
            within = {g for attention in graph.heads for head in attention for g in head}
            if moments is not None:
                moments = {g: m for g, m in moments.items() if g not in within}
            maps = transport_maps(
                state, estimate_state, graph, estimate_graph, moments=moments, **options
            )
    return apply_maps(state, graph, maps)


def align(
    model: nn.Module,
    anchor: nn.Module,
    *,
    mode: str = "acts",
    x: object | None = None,
    solver: str = "emd",
    reg: float = 0.01,
    marginals: str = "uniform",
    batch_size: int = 100,
    strict: bool = False,
    method: str = "ot",
    seed: int = 0,
    ground_metric: str = "euclidean",
    cost_norm: str = "none",
    heads: str = "permute",
    acts_at: str = "pre",
) -> nn.Module:
    """`model` with its units transported onto `anchor`'s ("A aligned to B").

    The result has the anchor's widths. Units the alignment graph cannot follow stay in place with a
    warning (`strict=True`: an error). With exact EMD, uniform marginals and equal widths (or with
    Re-Basin) the maps are permutations and the result computes `model`'s function.

    Activation alignment compares units by their activations on `x`: with `acts_at="pre"` the
    output of each linear or convolution layer (or of the norm that alone reads it), with
    `acts_at="post"` the value after the elementwise functions that follow it (the nonlinearity;
    layers not followed by one, such as those adding into a residual stream, use their output
    either way). Units that are zero on every example after a ReLU cannot be told apart.

    Args:
        model: the model to align (A).
        anchor: the model aligned to (B).
        mode: "acts" (activations on `x`) or "wts" (incoming weights; `x` only traces a model
            without an input shape).
        x: a batch of inputs: a tensor, a tuple of positional arguments or a dict of keyword
            arguments (e.g. `input_ids` and `attention_mask`). Activation alignment and importance
            marginals read activations on all of it; weight alignment only traces the graph on two
            examples.
        solver: "emd" (exact) or "sinkhorn".
        reg: Sinkhorn's regularisation, relative to the largest cost of a layer.
        marginals: "uniform" or "importance" (|mean| x std of each unit's activations).
        batch_size: examples per forward pass when reading activations.
        strict: raise instead of leaving units the graph cannot follow in place.
        method: "ot" (transport maps, Singh & Jaggi) or "rebasin" (Git Re-Basin permutations; equal
            widths).
        seed: the random group order of Re-Basin's weight matching.
        ground_metric: OT's cost between units: "euclidean", "sqeuclidean" or "cosine".
        cost_norm: OT's cost rescaled before the solve: "none", "max", "median" or "log"
            (log(1 + cost)).
        heads: "permute" (whole attention heads may trade places, then units within heads are
            matched) or "fixed" (every head stays in its place).
        acts_at: "pre" or "post": activations before or after the nonlinearity (see above).

    Returns:
        A new model in eval mode: `model`'s class with the anchor's widths.

    Examples:
        A permuted copy is put back in the anchor's order, from activations after the ReLU:

        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> anchor = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> order = torch.tensor([2, 0, 3, 1])
        >>> with torch.no_grad():
        ...     _ = model[0].weight.copy_(anchor[0].weight[order])
        ...     _ = model[0].bias.copy_(anchor[0].bias[order])
        ...     _ = model[2].weight.copy_(anchor[2].weight[:, order])
        ...     _ = model[2].bias.copy_(anchor[2].bias)
        >>> aligned = align(model, anchor, x=torch.randn(32, 3), acts_at="post")
        >>> all(torch.equal(aligned.state_dict()[k], v) for k, v in anchor.state_dict().items())
        True
    """
    check_options(mode, x, solver, marginals, method, ground_metric, cost_norm, heads, acts_at)
    graph, anchor_graph = prepare([model, anchor], x, strict=strict, mode=mode)
    moments = None
    if mode == "acts" or marginals == "importance":
        moments = activation_moments(
            [model],
            anchor,
            [graph],
            anchor_graph,
            to_device(x, next(anchor.parameters()).device),
            batch_size,
            acts_at,
        )[0]
    state = aligned_state(
        model,
        anchor,
        graph,
        anchor_graph,
        mode=mode,
        moments=moments,
        solver=solver,
        reg=reg,
        marginals=marginals,
        method=method,
        seed=seed,
        ground_metric=ground_metric,
        cost_norm=cost_norm,
        heads=heads,
    )
    same = all(v.shape == state[k].shape for k, v in model.state_dict().items())
    return with_state(model if same else anchor, state)
