"""Whole attention heads trading places: moving every axis a head's units index, and checking that
the model's function allows it.

The alignment graph lists the heads of each `F.scaled_dot_product_attention` call
(`AlignmentGraph.heads`): each head's query/key groups and value groups. Attention never mixes two
heads, so giving head j the units of head i on every parameter axis they index (a permutation of
heads) keeps the function, unless something the graph does not bind treats heads differently (a
per-head scale applied to the queries, for instance). `interchangeable` tests that on the example:
the heads are kept only if the function is unchanged by a cyclic shift of the heads and by a swap of
the first two, which together generate every permutation of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn
from torch.func import functional_call
from torch.utils import _pytree as pytree

from landscape.errors import LandscapeError

from .batches import call_arguments
from .graph import AlignmentGraph


def permute_heads(
    state: dict[str, torch.Tensor], graph: AlignmentGraph, orders: list[list[int]]
) -> dict[str, torch.Tensor]:
    """A copy of `state` with whole heads moved: head j of each attention takes the units of head
    `order[j]` on every axis they index (the function is kept). A group's k-th run on an axis takes
    the k-th run of its source group there.
    """
    source = {
        g: src
        for heads, order in zip(graph.heads, orders)
        for j, i in enumerate(order)
        for g, src in zip(heads[j], heads[i])
    }
    out = dict(state)
    for b in graph.bindings:
        if b.name not in out or not any(
            source.get(seg.group, seg.group) != seg.group for seg in b.segments
        ):
            continue
        runs: dict[tuple[int, int], tuple[int, int]] = {}
        keyed = []
        for seg, start, length in graph.spans(b.segments):
            k = sum(g == seg.group for g, _ in runs)
            runs[(seg.group, k)] = (start, length)
            keyed.append((seg.group, k, length))
        index = []
        for g, k, length in keyed:
            src, n = runs.get((source.get(g, g), k), (None, None))
            if n != length:
                raise LandscapeError(
                    f"internal error: the heads on axis {b.axis} of {b.name} are laid out unevenly"
                )
            index.extend(range(src, src + length))
        out[b.name] = out[b.name].index_select(
            b.axis, torch.tensor(index, device=out[b.name].device)
        )
    return out


def _outputs(
    model: nn.Module, state: dict[str, torch.Tensor], example: object
) -> list[torch.Tensor]:
    """The floating-point tensors `model` returns on `example` with `state` as its parameters and
    buffers.
    """
    args, kwargs = call_arguments(example)
    with torch.no_grad():
        out = functional_call(
            model, state, args, kwargs, tie_weights=False
        )  # tied names: one value each
    return [
        v for v in pytree.tree_leaves(out) if isinstance(v, torch.Tensor) and v.is_floating_point()
    ]


def interchangeable(
    models: Sequence[nn.Module], graphs: list[AlignmentGraph], example: object
) -> list[AlignmentGraph]:
    """`graphs` (one per model, same structure) listing only the attentions whose heads every model
    allows to trade places: its output on `example` is unchanged by a cyclic shift of the heads and
    by a swap of the first two (see the module docstring).
    """
    if not graphs or not graphs[0].heads:
        return graphs
    states = [{k: v.detach() for k, v in m.state_dict().items()} for m in models]
    references = [_outputs(m, st, example) for m, st in zip(models, states)]
    keep = []
    for f, heads in enumerate(graphs[0].heads):
        n = len(heads)
        tests = [[(j + 1) % n for j in range(n)], [1, 0, *range(2, n)]]
        if all(
            _close(
                _outputs(m, permute_heads(st, replace(g, heads=(g.heads[f],)), [t]), example), ref
            )
            for m, g, st, ref in zip(models, graphs, states, references)
            for t in tests
        ):
            keep.append(f)
    return [replace(g, heads=tuple(g.heads[f] for f in keep)) for g in graphs]


def _close(out: list[torch.Tensor], reference: list[torch.Tensor]) -> bool:
    return len(out) == len(reference) and all(
        torch.allclose(a, b, rtol=1e-4, atol=1e-5 * max(float(b.abs().max()), 1.0))
        for a, b in zip(out, reference)
    )
