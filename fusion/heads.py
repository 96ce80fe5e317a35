"""Whole attention heads trading places, and the check that a model's function allows it.

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
    """A copy of `state` with whole heads moved, keeping the function.

    Head j of each attention takes the units of head `order[j]` on every axis they index. A group's
    k-th run on an axis takes the k-th run of its source group there.

    Args:
        state: the model's parameters and buffers by state_dict key.
        graph: its alignment graph (its `heads`: per attention, each head's groups).
        orders: per attention of `graph.heads`, the source head of each head.

    Returns:
        The moved copy (entries no head indexes are the same tensors).

    Raises:
        LandscapeError: a head's runs on an axis differ in length from its source's (an internal
            error: the graph's heads are of equal sizes).

    Examples:
        Two heads of two units each, on the rows of one weight:

        >>> import torch
        >>> from fusion.graph import AlignmentGraph, Binding, Group, Segment
        >>> heads = (((0,), (1,)),)
        >>> groups = (Group(2, False, (), ()), Group(2, False, (), ()))
        >>> rows = Binding("w", 0, "out", (Segment(0), Segment(1)))
        >>> graph = AlignmentGraph((), groups, (rows,), -1, -1, heads=heads)
        >>> state = {"w": torch.arange(4.0)[:, None]}
        >>> permute_heads(state, graph, [[1, 0]])["w"].flatten().tolist()
        [2.0, 3.0, 0.0, 1.0]
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
    """Return the floating-point tensors `model` returns on `example` with `state` as its state."""
    args, kwargs = call_arguments(example)
    with torch.no_grad():
        # tied names: one value each
        out = functional_call(model, state, args, kwargs, tie_weights=False)
    return [
        v for v in pytree.tree_leaves(out) if isinstance(v, torch.Tensor) and v.is_floating_point()
    ]


def interchangeable(
    models: Sequence[nn.Module], graphs: list[AlignmentGraph], example: object
) -> list[AlignmentGraph]:
    """`graphs` listing only the attentions whose heads every model allows to trade places.

    A model allows it when its output on `example` is unchanged by a cyclic shift of the heads and
    by a swap of the first two (see the module docstring).

    Args:
        models: the models.
        graphs: their alignment graphs (one per model, same structure).
        example: a batch of inputs (a tensor, a tuple of positional arguments or a dict of keyword
            arguments).

    Returns:
        The graphs with `heads` reduced to those attentions.

    Examples:
        Two "heads" of a hidden layer that the next layer reads: swapping them, rows and columns
        together, keeps the function; moving the rows alone does not:

        >>> import torch
        >>> from torch import nn
        >>> from fusion.graph import AlignmentGraph, Binding, Group, Segment
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
        >>> segments = (Segment(0), Segment(1))
        >>> rows = (Binding("0.weight", 0, "out", segments), Binding("0.bias", 0, "out", segments))
        >>> columns = Binding("1.weight", 1, "in", segments)
        >>> groups = (Group(2, False, (), ()), Group(2, False, (), ()))
        >>> heads = (((0,), (1,)),)
        >>> whole = AlignmentGraph((), groups, (*rows, columns), -1, -1, heads=heads)
        >>> half = AlignmentGraph((), groups, rows, -1, -1, heads=heads)
        >>> x = torch.randn(5, 3)
        >>> [len(g.heads) for g in interchangeable([model], [whole], x)]
        [1]
        >>> [len(g.heads) for g in interchangeable([model], [half], x)]
        [0]
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
    """Return whether the outputs agree with the reference ones to float rounding."""
    return len(out) == len(reference) and all(
        torch.allclose(a, b, rtol=1e-4, atol=1e-5 * max(float(b.abs().max()), 1.0))
        for a, b in zip(out, reference)
    )
