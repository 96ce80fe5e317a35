"""Align a model to an estimate of the fused model: one transport map per unit group, applied to every
parameter that is indexed by the group's units (Algorithm 1, lines 8-14, of the OT-fusion paper).

Order (weight mode): Algorithm 1 aligns a layer's incoming weights with the previous layer's map before
computing its own. In the graph a group is solved just before the first layer that reads it, from its
producers seen so far (their inputs are aligned by then). For plain networks that is every producer; a
residual stream is solved from the layers that open it (the stem, or a block's second conv and projection
shortcut), because the later blocks that add into it read the stream themselves. In activation mode every
group is solved independently, from the pre-activations of all its producers.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from landscape.errors import LandscapeError

from .checks import check_finite, check_same_graph, check_specs
from .choices import MARGINALS, MODES, SOLVERS
from .graph import AlignmentGraph, build_graph
from .metrics import Moments, activation_moments, weight_cost, weight_rows
from .transport import Map, normalised, plan, uniform


def check_options(mode: str, x: torch.Tensor | None, solver: str, marginals: str) -> None:
    """Raise a one-line error for an unknown mode, solver or marginal, or missing inputs."""
    if mode not in MODES:
        raise LandscapeError(f"unknown alignment mode {mode!r}; choose one of {', '.join(MODES)}")
    if solver not in SOLVERS:
        raise LandscapeError(f"unknown OT solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if marginals not in MARGINALS:
        raise LandscapeError(f"unknown marginals {marginals!r}; choose one of {', '.join(MARGINALS)}")
    if x is None and (mode == "acts" or marginals == "importance"):
        raise LandscapeError("activation-based alignment and importance marginals need x, a batch of inputs")


def _example(models: Sequence[nn.Module], x: torch.Tensor | None) -> torch.Tensor:
    """Two inputs to trace with: from `x`, else zeros of the spec's input shape."""
    device = next(models[0].parameters()).device
    if x is not None:
        return x[:2].to(device)
    shape = getattr(models[0], "landscape_spec", {}).get("arch_kwargs", {}).get("input_shape")
    if shape is None:
        raise LandscapeError("pass x (a batch of inputs): the model has no input_shape in its landscape_spec")
    return torch.zeros(2, *shape, device=device)


def prepare(models: Sequence[nn.Module], x: torch.Tensor | None) -> AlignmentGraph:
    """Check that the models can be aligned to each other and return their (shared) alignment graph."""
    check_finite(models)
    check_specs(models)
    example = _example(models, x)
    graphs = [build_graph(m, example) for m in models]
    check_same_graph(graphs)
    return graphs[0]


def _marginals(cost: np.ndarray, mom: Moments | None, marginals: str) -> tuple[np.ndarray, np.ndarray]:
    if marginals == "importance":
        return normalised(mom.importance_model.cpu().numpy()), normalised(mom.importance_estimate.cpu().numpy())
    return uniform(cost.shape[0]), uniform(cost.shape[1])


def transport_maps(state: dict[str, torch.Tensor], estimate_state: dict[str, torch.Tensor], graph: AlignmentGraph,
                   *, mode: str = "acts", moments: dict[int, Moments] | None = None, solver: str = "emd",
                   reg: float = 0.01, marginals: str = "uniform") -> dict[int, Map]:
    """One transport map per movable group, from a model's units (`state`) to the estimate's."""
    device = next(iter(estimate_state.values())).device
    maps: dict[int, Map] = {}

    def solve(gid: int, producers: Sequence[str]) -> None:
        mom = moments[gid] if moments is not None else None
        if mode == "acts":
            cost = mom.cost()
        else:
            cost = weight_cost(weight_rows(state, graph, producers, maps),
                               weight_rows(estimate_state, graph, producers, None))
        a, b = _marginals(cost, mom, marginals)
        maps[gid] = Map.from_plan(plan(cost, a, b, solver, reg), device)

    movable = [gid for gid, g in enumerate(graph.groups) if not g.fixed]
    if mode == "acts":
        for gid in movable:
            solve(gid, graph.groups[gid].producers)
        return maps
    seen: dict[int, list[str]] = {gid: [] for gid in movable}
    for layer in graph.layers:
        if layer.kind == "norm":
            continue
        if layer.in_group in seen and layer.in_group not in maps:
            solve(layer.in_group, seen[layer.in_group])
        if layer.group in seen:
            seen[layer.group].append(layer.name)
    for gid in movable:
        if gid not in maps:
            solve(gid, seen[gid])
    return maps


def apply_maps(state: dict[str, torch.Tensor], graph: AlignmentGraph, maps: dict[int, Map]) -> dict[str, torch.Tensor]:
    """A copy of `state` with every unit-indexed parameter and buffer moved into the estimate's basis."""
    out = dict(state)
    for layer in graph.layers:
        rows = maps.get(layer.group)
        keys = ("weight", "bias") if layer.kind != "norm" else ("weight", "bias", "running_mean", "running_var")
        for key in keys:
            name = f"{layer.name}.{key}"
            if name not in state:
                continue
            value = state[name]
            moved = rows.move_units(value) if rows is not None else value
            if key == "weight" and layer.kind != "norm" and layer.in_group in maps:
                moved = maps[layer.in_group].move_inputs(moved, layer.in_block)
            out[name] = moved.to(value.dtype)
    return out


def with_state(template: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A deep copy of `template` (its class and landscape_spec) holding `state`, in eval mode."""
    model = copy.deepcopy(template)
    model.load_state_dict(state)
    return model.eval()


def aligned_state(model: nn.Module, estimate: nn.Module, graph: AlignmentGraph, *, mode: str,
                  moments: dict[int, Moments] | None, solver: str, reg: float, marginals: str
                  ) -> dict[str, torch.Tensor]:
    """`model`'s state moved into `estimate`'s basis (the estimate itself is returned unchanged)."""
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if model is estimate:
        return state
    maps = transport_maps(state, {k: v.detach() for k, v in estimate.state_dict().items()}, graph, mode=mode,
                          moments=moments, solver=solver, reg=reg, marginals=marginals)
    return apply_maps(state, graph, maps)


def align(model: nn.Module, anchor: nn.Module, *, mode: str = "acts", x: torch.Tensor | None = None,
          solver: str = "emd", reg: float = 0.01, marginals: str = "uniform", batch_size: int = 100) -> nn.Module:
    """`model` with its units transported onto `anchor`'s ("A aligned to B"); it has the anchor's widths."""
    check_options(mode, x, solver, marginals)
    graph = prepare([model, anchor], x)
    moments = None
    if mode == "acts" or marginals == "importance":
        moments = activation_moments([model], anchor, graph, x.to(next(anchor.parameters()).device), batch_size)[0]
    state = aligned_state(model, anchor, graph, mode=mode, moments=moments, solver=solver, reg=reg,
                          marginals=marginals)
    same = all(v.shape == state[k].shape for k, v in model.state_dict().items())
    return with_state(model if same else anchor, state)
