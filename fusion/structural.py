"""Operations that move a layout without computing on its channels.

Reshapes and flattens, concatenation, slices, zero padding, splits, axis moves and selections of
channels split into heads, attention, and GroupNorm (which cuts the channels into its groups).

Each handler of `STRUCTURAL` takes the walk's record and a node whose input carries units; it
returns the node's state, or `NotImplemented` to leave the node to the numeric equivariance test
(`fusion/equivariance.py`).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from torch import fx
from torch.fx.operator_schemas import normalize_function

from .layout import Layout, Seg, expand
from .record import NodeState, Param, Record

aten = torch.ops.aten

VIEWS = {
    aten.view,
    aten.reshape,
    aten._unsafe_view,
    aten.flatten,
    aten.unflatten,
    aten.squeeze,
    aten.unsqueeze,
    aten._reshape_alias,
}
SAME_SHAPE = {
    aten.alias,
    aten.clone,
    aten.contiguous,
    aten.detach,
    aten._to_copy,
    aten.to,
    aten.lift_fresh_copy,
    aten.type_as,
}


def named(node: fx.Node) -> dict:
    """The node's arguments by schema name, defaults filled in.

    Args:
        node: a node calling an ATen operator.

    Returns:
        Its arguments by name, or an empty dict if its schema does not match them.

    Examples:
        >>> import torch
        >>> from torch import fx
        >>> graph = fx.Graph()
        >>> x = graph.placeholder("x")
        >>> named(graph.call_function(torch.ops.aten.sum.dim_IntList, (x, [1])))
        {'input': x, 'dim': [1], 'keepdim': False, 'dtype': None}
    """
    pair = normalize_function(
        node.target, tuple(node.args), dict(node.kwargs), normalize_to_only_use_kwargs=True
    )
    return dict(pair.kwargs) if pair is not None else {}


def _prefix(shape: tuple[int, ...]) -> list[int]:
    """Return the products of the first 0, 1, ..., len(shape) sizes."""
    out = [1]
    for s in shape:
        out.append(out[-1] * s)
    return out


def reshape(layout: Layout, before: tuple[int, ...], after: tuple[int, ...]) -> Layout | None:
    """The layout after a reshape from `before` to `after` (row-major), if units can be followed.

    A channel axis kept whole (merged with neighbours, or split with its units' blocks) stays one
    axis; one split into several axes (attention heads: (..., C) to (..., H, C / H)) becomes a
    layout over those axes, its segments cut at every index of the outer axes (one head each), and
    merges back the same way.

    Args:
        layout: the units along the input's axes.
        before: the input's shape.
        after: the output's shape.

    Returns:
        The units along the output's axes, or None if the reshape splits units.

    Examples:
        Flattening (4, 3, 3) feature maps makes each channel a block of 9 features; channels-last,
        the run of 4 channels repeats 9 times:

        >>> channels = Layout(1, (Seg(0, 0, 4),))
        >>> reshape(channels, (2, 4, 3, 3), (2, 36)).segs
        (Seg(group=0, start=0, n=4, inner=9, outer=1),)
        >>> reshape(Layout(3, channels.segs), (2, 3, 3, 4), (2, 36)).segs
        (Seg(group=0, start=0, n=4, inner=1, outer=9),)

        Splitting 8 channels into 2 heads of 4: one segment per head, over axes (2, 3):

        >>> heads = reshape(Layout(2, (Seg(0, 0, 8),)), (2, 5, 8), (2, 5, 2, 4))
        >>> heads.axes, [(s.start, s.n) for s in heads.segs]
        ((2, 3), [(0, 4), (4, 4)])

        A reshape that cuts channels in two is not followed:

        >>> reshape(channels, (2, 4, 3, 3), (2, 2, 18)) is None
        True
    """
    if not layout.outer_axes:
        moved = _reshape_axis(layout, before, after)
        if moved is not None:
            return moved
    return _reshape_elements(layout, before, after)


def _reshape_axis(layout: Layout, before: tuple[int, ...], after: tuple[int, ...]) -> Layout | None:
    """Return the layout of one axis after a reshape that keeps each unit's block whole, or None."""
    a = layout.axis
    if 0 in before or 0 in after or not 0 <= a < len(before):
        return None
    pin, pout = _prefix(before), _prefix(after)
    for k in range(
        len(after)
    ):  # the channel axis lies within output axis k (kept, merged or given size-1 dims)
        if (
            pin[a] % pout[k] == 0
            and pout[k + 1] % pin[a + 1] == 0
            and pout[k] <= pin[a] < pout[k + 1]
        ):
            outer, inner = pin[a] // pout[k], pout[k + 1] // pin[a + 1]
            segs = tuple(replace(s, inner=s.inner * inner) for s in layout.segs)
            if outer > 1:
                segs = (
                    (replace(segs[0], outer=segs[0].outer * outer),)
                    if len(segs) == 1
                    else segs * outer
                )
            return Layout(k, segs)
    starts = [k for k in range(len(after)) if pout[k] == pin[a] and after[k] > 1]
    if not starts or pin[a + 1] not in pout:  # the channel axis split over output axes k, k+1, ...
        return None
    k = starts[0]
    if before[a] % after[k]:
        return None
    per = before[a] // after[k]  # elements per index of axis k
    segs, off = [], 0
    for s in layout.segs:
        if s.outer != 1 or s.inner % per or off % per:
            return None
        segs.append(replace(s, inner=s.inner // per))
        off += s.length
    return Layout(k, tuple(segs))


def _reshape_elements(
    layout: Layout, before: tuple[int, ...], after: tuple[int, ...]
) -> Layout | None:
    """Return the layout after a reshape followed element by element, or None.

    Each element of the layout gets a code, the codes are broadcast over the other axes and
    reshaped; the output axes along which the codes vary carry the layout.
    """
    axes = layout.axes
    if (
        list(axes) != sorted(set(axes))
        or not all(0 <= a < len(before) for a in axes)
        or math.prod(before[a] for a in axes) != layout.length
        or math.prod(before) != math.prod(after)
    ):
        return None
    elements = [
        (s.group, s.start + u, i, s.inner)
        for s in expand(layout.segs)
        for u in range(s.n)
        for i in range(s.inner)
    ]
    units = list(dict.fromkeys(elements))  # one code per element of a unit (repetitions share it)
    code = {e: c for c, e in enumerate(units)}
    grid = [before[a] if a in axes else 1 for a in range(len(before))]
    codes = torch.tensor([code[e] for e in elements]).reshape(grid).expand(before).reshape(after)
    varying = [
        k
        for k in range(len(after))
        if after[k] > 1 and bool((codes != codes.narrow(k, 0, 1)).any())
    ]
    if not varying:
        return None
    index = tuple(slice(None) if k in varying else 0 for k in range(len(after)))
    seq = codes[index].reshape(-1).tolist()
    repeat = next((i for i, c in enumerate(seq) if c != seq[0]), len(seq))
    if len(seq) % repeat or seq != [c for c in seq[::repeat] for _ in range(repeat)]:
        return None
    block = after[varying[-1]] if len(varying) > 1 else len(seq)
    if block % repeat or (len(varying) > 1 and repeat > 1):
        return None
    segs = _parse([units[c] for c in seq[::repeat]], block // repeat, repeat)
    if segs is None:
        return None
    return Layout(varying[-1], segs, tuple(varying[:-1]))


def _parse(
    elements: list[tuple[int, int, int, int]], block: int, repeat: int
) -> tuple[Seg, ...] | None:
    """Return segments covering a sequence of (group, unit, position in unit, elements per unit).

    A new segment starts at least every `block` elements; None if a unit's elements are not
    consecutive and in order.
    """
    segs: list[Seg] = []
    i = 0
    while i < len(elements):
        g, u, pos, inner = elements[i]
        if pos:
            return None
        n = 0
        while True:
            j = i + n * inner
            if j >= len(elements) or (n and j % block == 0) or elements[j][:2] != (g, u + n):
                break
            if [e[2:] for e in elements[j : j + inner]] != [
                (p, inner) for p in range(inner)
            ] or any(e[:2] != (g, u + n) for e in elements[j : j + inner]):
                return None
            n += 1
        if not n:
            return None
        segs.append(Seg(g, u, n, inner * repeat))
        i += n * inner
    return tuple(segs)


def _view(rec: Record, node: fx.Node) -> NodeState:
    """Return the layout after view, reshape, flatten, unflatten, squeeze or unsqueeze."""
    layout = rec.state.get(node.args[0])
    if not isinstance(layout, Layout):
        return NotImplemented
    moved = reshape(layout, rec.shape(node.args[0]), rec.shape(node))
    if moved is None:
        return rec.freeze(node, [layout], "a reshape splits its channels")
    if moved.outer_axes:
        rec.units.cut_segments(moved)
    return moved


def _move_axes(rec: Record, node: fx.Node) -> NodeState:
    """Return the layout after transpose, permute or t of a layout split into heads.

    Its axes follow; a layout of a single axis is left to the equivariance test.
    """
    layout = rec.state.get(node.args[0])
    if not isinstance(layout, Layout) or not layout.outer_axes:
        return NotImplemented
    rank = len(rec.shape(node.args[0]))
    order = list(range(rank))
    packet = node.target.overloadpacket
    if packet is aten.permute:
        order = [d % rank for d in node.args[1]]
    elif packet is aten.t:
        order.reverse()
    else:
        i, j = (d % rank for d in node.args[1:3])
        order[i], order[j] = order[j], order[i]
    where = {old: new for new, old in enumerate(order)}
    return Layout(where[layout.axis], layout.segs, tuple(where[a] for a in layout.outer_axes))


def _select(rec: Record, node: fx.Node) -> NodeState:
    """Return the layouts after select or unbind of a layout split into heads.

    Along an axis the layout does not run over, the layout stays; along its outermost axis, each
    index holds one block of its elements.
    """
    layout = rec.state.get(node.args[0])
    if not isinstance(layout, Layout) or not layout.outer_axes:
        return NotImplemented
    shape = rec.shape(node.args[0])
    dim = node.args[1] % len(shape) if len(node.args) > 1 else 0
    unbind = node.target.overloadpacket is aten.unbind
    indices = range(shape[dim]) if unbind else [node.args[2] % shape[dim]]

    def drop(a: int) -> int:
        """Return axis `a`'s index once `dim` is gone."""
        return a - (a > dim)

    if dim not in layout.axes:
        parts = [
            Layout(drop(layout.axis), layout.segs, tuple(drop(a) for a in layout.outer_axes))
            for _ in indices
        ]
    elif dim == layout.outer_axes[0]:
        block = layout.length // shape[dim]
        rest = tuple(drop(a) for a in layout.outer_axes[1:])
        parts = []
        for i in indices:
            sub = rec.units.slice(layout, i * block, (i + 1) * block)
            if sub is None:
                return NotImplemented
            parts.append(Layout(drop(layout.axis), sub.segs, rest))
    else:
        return NotImplemented
    return tuple(parts) if unbind else parts[0]


def _attention(rec: Record, node: fx.Node) -> NodeState:
    """Return the layout after scaled_dot_product_attention: the values' units.

    Queries and keys are contracted over their last axis, so their units pair (Q and K of a head
    move together); the output carries the values' units (V moves with what reads it).
    """
    a = named(node)
    q, k, v = (rec.state.get(a[name]) for name in ("query", "key", "value"))
    rank = len(rec.shape(node))
    if (
        isinstance(rec.state.get(a.get("attn_mask")), Layout)
        or not all(
            isinstance(t, Layout) and t.axis == rank - 1 and rank - 2 not in t.outer_axes
            for t in (q, k, v)
        )
        or q.outer_axes != k.outer_axes
        or not rec.units.unify(q, k)
    ):
        return NotImplemented
    mask = a.get("attn_mask")
    if (
        mask is None or rec.values[mask].ndim < 3 or rec.values[mask].shape[-3] == 1
    ):  # heads are interchangeable
        heads = [_heads(t, rec.shape(a[name])[-1]) for t, name in ((q, "query"), (v, "value"))]
        if all(heads) and len(heads[0]) == len(heads[1]) > 1:
            rec.heads.append(tuple(hq + hv for hq, hv in zip(*heads)))
    return Layout(v.axis, v.segs, v.outer_axes)


def _heads(layout: Layout, width: int) -> list[tuple[Seg, ...]] | None:
    """Return the segments of each head of a layout split into heads (`width` elements each).

    Heads come in order; heads merged with the batch axis repeat and are counted once. None if a
    segment crosses a head's boundary.
    """
    blocks, block, filled = [], [], 0
    for s in expand(layout.segs):
        block.append(s)
        filled += s.length
        if filled == width:
            blocks.append(tuple(block))
            block, filled = [], 0
        elif filled > width:
            return None
    return list(dict.fromkeys(blocks)) if not block else None


def _cat(rec: Record, node: fx.Node) -> NodeState:
    """Return the layout after concatenation along the channels: the inputs' segments in order.

    Inputs that carry no units get new fixed groups.
    """
    a = named(node)
    out = rec.values[node]
    dim = a.get("dim", 0) % out.ndim
    tensors = [
        t for t in a["tensors"] if not (rec.values[t].ndim == 1 and rec.values[t].numel() == 0)
    ]
    if any(
        isinstance(rec.state[t], Layout) and (rec.state[t].axis != dim or rec.state[t].outer_axes)
        for t in tensors
    ):
        return NotImplemented
    segs = []
    for t in tensors:
        k = rec.state[t]
        segs.extend(
            k.segs
            if isinstance(k, Layout)
            else rec.units.layout(dim, rec.values[t].shape[dim], fixed="fixed data").segs
        )
    return Layout(dim, tuple(segs))


def _slice(rec: Record, node: fx.Node) -> NodeState:
    """Return the units a contiguous slice of the channels keeps (they must be whole units)."""
    a = named(node)
    x = a["input"]
    layout = rec.state.get(x)
    n = rec.shape(x)
    dim = a.get("dim", 0) % len(n)
    if not isinstance(layout, Layout) or dim != layout.axis or layout.outer_axes:
        return NotImplemented
    r = range(n[dim])[slice(a.get("start"), a.get("end"), a.get("step", 1))]
    if r.step != 1:
        return NotImplemented
    sub = rec.units.slice(layout, r.start, max(r.start, r.stop))
    return (
        sub
        if sub is not None
        else rec.freeze(node, [layout], "a slice cuts through its units' blocks")
    )


def _pad(rec: Record, node: fx.Node) -> NodeState:
    """Return the layout after zero padding of the channels: new groups around the layout."""
    a = named(node)
    layout = rec.state.get(a["input"])
    if not isinstance(layout, Layout) or layout.outer_axes:
        return NotImplemented
    pad, nd = list(a["pad"]), rec.values[node].ndim
    i = 2 * (nd - 1 - layout.axis)
    before, after = (pad[i], pad[i + 1]) if i + 1 < len(pad) else (0, 0)
    if before == after == 0:
        return Layout(layout.axis, layout.segs)
    if a.get("mode", "constant") != "constant" or before < 0 or after < 0:
        return rec.freeze(node, [layout], "it pads or crops the channels")
    segs = [
        *(rec.units.layout(layout.axis, before).segs if before else ()),
        *layout.segs,
        *(rec.units.layout(layout.axis, after).segs if after else ()),
    ]
    return Layout(layout.axis, tuple(segs))


def _split(rec: Record, node: fx.Node) -> NodeState:
    """Return the layouts after split or chunk: each part's units (or, along another axis, all)."""
    x = node.args[0]
    layout = rec.state.get(x)
    if not isinstance(layout, Layout) or layout.outer_axes:
        return NotImplemented
    dim = named(node).get("dim", 0) % len(rec.shape(x))
    outs = rec.values[node]
    if dim != layout.axis:
        return tuple(Layout(layout.axis, layout.segs) for _ in outs)
    parts, off = [], 0
    for o in outs:
        sub = rec.units.slice(layout, off, off + o.shape[dim])
        if sub is None:
            return rec.freeze(node, [layout], "a split cuts through its units' blocks")
        parts.append(sub)
        off += o.shape[dim]
    return tuple(parts)


def _group_norm(rec: Record, node: fx.Node) -> NodeState:
    """Return the layout after GroupNorm: channels cut at its groups, its parameters bound."""
    a = named(node)
    layout = rec.state.get(a["input"])
    params = [p for p in (a.get("weight"), a.get("bias")) if p is not None]
    if (
        not isinstance(layout, Layout)
        or layout.axis != 1
        or layout.outer_axes
        or any(not (isinstance(rec.state[p], Param) and rec.state[p].prov[0]) for p in params)
    ):
        return NotImplemented
    groups, size = int(a["num_groups"]), layout.length
    if groups > 1 and not rec.units.cut_at(layout, [size // groups * i for i in range(1, groups)]):
        return rec.freeze(node, [layout], "its GroupNorm groups cut through its units' blocks")
    for p in params:
        for key, ax in rec.state[p].prov[0]:
            rec.bind(key, ax, "out", layout, node)
    return Layout(1, layout.segs)


STRUCTURAL = {
    **dict.fromkeys(VIEWS, _view),
    aten.cat: _cat,
    aten.slice: _slice,
    aten.pad: _pad,
    aten.constant_pad_nd: _pad,
    aten.split: _split,
    aten.split_with_sizes: _split,
    aten.chunk: _split,
    aten.group_norm: _group_norm,
    aten.transpose: _move_axes,
    aten.permute: _move_axes,
    aten.t: _move_axes,
    aten.select: _select,
    aten.unbind: _select,
    aten.scaled_dot_product_attention: _attention,
}
