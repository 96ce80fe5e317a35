"""Parameter provenance, and operations whose output units only parameters define.

A tensor computed from parameters alone (a transposed or reshaped weight, a scaled bias) follows
parameter axes, which producers and bindings use. Operations whose output units only parameters
define (embeddings read by index, recurrent layers) cannot be followed: their units stay in place.
"""

from __future__ import annotations

import torch
from torch import fx
from torch.utils import _pytree as pytree

from .equivariance import close, random_like, run_node, unit_perms
from .layout import Layout, Seg
from .record import Fixed, NodeState, Param, Record
from .structural import SAME_SHAPE, VIEWS, reshape

aten = torch.ops.aten


def parameter_units(rec: Record, node: fx.Node, leaves: list[fx.Node]) -> None:
    """Record a freeze event where an operation's output units are defined by parameters alone.

    The operation reads data that carries no movable units and parameters whose sizes appear in
    its output but in none of its data inputs (an embedding, a recurrent layer, a matmul with a
    weight): its output has units that only those parameters define, which fusion cannot follow.
    They stay in place, with a warning.

    Args:
        rec: the walk's record (a freeze event is added to it).
        node: the operation.
        leaves: its tensor inputs.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from fusion.export import trace
        >>> from fusion.walk import Walk
        >>> walk = Walk(trace(nn.Sequential(nn.RNN(3, 4)), torch.randn(5, 2, 3)))
        >>> walk.run()
        >>> rnn = next(n for n in walk.tr.graph.nodes if n.name == "rnn_tanh")
        >>> walk.events.clear()
        >>> parameter_units(walk, rnn, walk.tensor_inputs(rnn))
        >>> [why for _, why in walk.events]
        ['its output units are defined by parameters that fusion does not know how to move']
    """
    params = [rec.shape(n) for n in leaves if isinstance(rec.state[n], Param)]
    data = {
        s
        for n in leaves
        if isinstance(rec.state[n], Layout)
        or (isinstance(rec.state[n], Fixed) and rec.state[n].from_input)
        for s in rec.shape(n)
    }
    sizes = {s for shape in params if sum(d > 1 for d in shape) >= 2 for s in shape if s > 1}
    outs = [v for v in pytree.tree_leaves(rec.values[node]) if isinstance(v, torch.Tensor)]
    if params and data and any(s in sizes and s not in data for v in outs for s in v.shape):
        rec.event(
            node, "its output units are defined by parameters that fusion does not know how to move"
        )


# ---------------------------------------------------------------------------------- parameter-only
# ops
def param_op(rec: Record, node: fx.Node, packet, leaves: list[fx.Node]) -> NodeState:
    """The provenance of the output of an operation on parameters alone.

    Views, axis moves, slices, expands and copies carry the provenance of each input axis to the
    output axis it becomes, where its size is kept; for any other operation, an output axis follows
    the input axes of its size (broadcast-aligned) when permuting all of them permutes the output
    along it.

    Args:
        rec: the walk's record.
        node: the operation.
        packet: its ATen operator overload packet (e.g. `torch.ops.aten.t`).
        leaves: its tensor inputs, all `Param`.

    Returns:
        A `Param` with the (state key, axis) pairs each output axis follows (empty where none),
        or `Fixed` states if the output is not a tensor.

    Examples:
        A weight transposed in `forward`: its axes swap.

        >>> import torch
        >>> from torch import nn
        >>> from fusion.export import trace
        >>> from fusion.walk import Walk
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.w = nn.Parameter(torch.randn(4, 3))
        ...
        ...     def forward(self, x):
        ...         return x @ self.w.t()
        >>> walk = Walk(trace(Net(), torch.randn(2, 3)))
        >>> walk.run()
        >>> t = next(n for n in walk.tr.graph.nodes if n.name == "t")
        >>> param_op(walk, t, torch.ops.aten.t, walk.tensor_inputs(t))
        Param(prov=((('w', 1),), (('w', 0),)))
    """
    out = rec.values[node]
    if not isinstance(out, torch.Tensor):
        return rec.fixed_like(out)
    prov: list[tuple] = [()] * out.ndim
    src = rec.state[leaves[0]]
    before = rec.shape(leaves[0])
    if packet in VIEWS:
        for a, p in enumerate(src.prov):
            if p and before[a] > 1:
                moved = reshape(Layout(a, (Seg(-1, 0, before[a]),)), before, tuple(out.shape))
                if moved is not None and moved.segs == (Seg(-1, 0, before[a]),):
                    prov[moved.axis] = p
    elif (
        packet in (aten.permute, aten.transpose, aten.t, aten.expand, aten.slice)
        or packet in SAME_SHAPE
    ):
        if packet is aten.permute:
            order = list(node.args[1])
        elif packet is aten.transpose:
            order = list(range(len(before)))
            i, j = (d % len(before) for d in node.args[1:3])
            order[i], order[j] = order[j], order[i]
        elif packet is aten.t:
            order = list(range(len(before)))[::-1]
        else:
            shift = out.ndim - len(before)
            order = [None] * shift + list(range(len(before)))
        for k, a in enumerate(order):
            if a is not None and out.shape[k] == before[a]:
                prov[k] = src.prov[a]
    else:
        for k in range(out.ndim):
            srcs = []
            for n in leaves:
                s = rec.shape(n)
                a = k - (out.ndim - len(s))
                if a >= 0 and s[a] == out.shape[k] > 1:
                    srcs.append((n, a))
            if not srcs or any(not rec.state[n].prov[a] for n, a in srcs):
                continue
            perm = unit_perms(rec, Layout(0, (Seg(-1, 0, out.shape[k]),)), out.device)[0]
            base = {n: random_like(rec, rec.values[n], data=False) for n in leaves}
            moved = dict(base)
            for n, a in srcs:
                moved[n] = base[n].index_select(a, perm)
            b, m = run_node(rec, node, base), run_node(rec, node, moved)
            if (
                isinstance(b, torch.Tensor)
                and isinstance(m, torch.Tensor)
                and close(m, b.index_select(k, perm))
            ):
                prov[k] = tuple(dict.fromkeys(p for n, a in srcs for p in rec.state[n].prov[a]))
    return Param(tuple(prov))
