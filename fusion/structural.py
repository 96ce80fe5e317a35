"""Operations that move a layout without computing on its channels: reshapes and flattens, concatenation,
slices, zero padding, splits, and GroupNorm (which cuts the channels into its groups).

Each handler takes the walk's record and a node whose input carries units; it returns the node's state, or
`NotImplemented` to leave the node to the numeric equivariance test (`fusion/equivariance.py`).
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import fx
from torch.fx.operator_schemas import normalize_function

from .layout import Layout
from .record import NodeState, Param, Record

aten = torch.ops.aten

VIEWS = {aten.view, aten.reshape, aten._unsafe_view, aten.flatten, aten.unflatten, aten.squeeze, aten.unsqueeze,
         aten._reshape_alias}
SAME_SHAPE = {aten.alias, aten.clone, aten.contiguous, aten.detach, aten._to_copy, aten.to, aten.lift_fresh_copy,
              aten.type_as}


def named(node: fx.Node) -> dict:
    """The node's arguments by schema name, defaults filled in."""
    pair = normalize_function(node.target, tuple(node.args), dict(node.kwargs), normalize_to_only_use_kwargs=True)
    return dict(pair.kwargs) if pair is not None else {}


def _prefix(shape: tuple[int, ...]) -> list[int]:
    out = [1]
    for s in shape:
        out.append(out[-1] * s)
    return out


def reshape(layout: Layout, before: tuple[int, ...], after: tuple[int, ...]) -> Layout | None:
    """The layout after a reshape from `before` to `after` (row-major), or None if units cannot be followed."""
    a = layout.axis
    if 0 in before or 0 in after or not 0 <= a < len(before):
        return None
    pin, pout = _prefix(before), _prefix(after)
    for k in range(len(after)):   # the channel axis lies within output axis k (kept, merged or given size-1 dims)
        if pin[a] % pout[k] == 0 and pout[k + 1] % pin[a + 1] == 0 and pout[k] <= pin[a] < pout[k + 1]:
            outer, inner = pin[a] // pout[k], pout[k + 1] // pin[a + 1]
            segs = tuple(replace(s, inner=s.inner * inner) for s in layout.segs)
            if outer > 1:
                segs = (replace(segs[0], outer=segs[0].outer * outer),) if len(segs) == 1 else segs * outer
            return Layout(k, segs)
    starts = [k for k in range(len(after)) if pout[k] == pin[a] and after[k] > 1]
    if not starts or pin[a + 1] not in pout:   # the channel axis split over output axes k, k+1, ...
        return None
    k = starts[0]
    if before[a] % after[k]:
        return None
    per = before[a] // after[k]    # elements per index of axis k
    segs, off = [], 0
    for s in layout.segs:
        if s.outer != 1 or s.inner % per or off % per:
            return None
        segs.append(replace(s, inner=s.inner // per))
        off += s.length
    return Layout(k, tuple(segs))



def view(rec: Record, node: fx.Node) -> NodeState:
    layout = rec.state.get(node.args[0])
    if not isinstance(layout, Layout):
        return NotImplemented
    moved = reshape(layout, rec.shape(node.args[0]), rec.shape(node))
    if moved is None:
        return rec.freeze(node, [layout], "a reshape splits its channels")
    return moved

def cat(rec: Record, node: fx.Node) -> NodeState:
    a = named(node)
    out = rec.values[node]
    dim = a.get("dim", 0) % out.ndim
    tensors = [t for t in a["tensors"] if not (rec.values[t].ndim == 1 and rec.values[t].numel() == 0)]
    if any(isinstance(rec.state[t], Layout) and rec.state[t].axis != dim for t in tensors):
        return NotImplemented
    segs = []
    for t in tensors:
        k = rec.state[t]
        segs.extend(k.segs if isinstance(k, Layout) else
                    rec.units.layout(dim, rec.values[t].shape[dim], fixed="fixed data").segs)
    return Layout(dim, tuple(segs))

def slice_(rec: Record, node: fx.Node) -> NodeState:
    a = named(node)
    x = a["input"]
    layout = rec.state.get(x)
    n = rec.shape(x)
    dim = a.get("dim", 0) % len(n)
    if not isinstance(layout, Layout) or dim != layout.axis:
        return NotImplemented
    r = range(n[dim])[slice(a.get("start"), a.get("end"), a.get("step", 1))]
    if r.step != 1:
        return NotImplemented
    sub = rec.units.slice(layout, r.start, max(r.start, r.stop))
    return sub if sub is not None else rec.freeze(node, [layout], "a slice cuts through its units' blocks")

def pad(rec: Record, node: fx.Node) -> NodeState:
    a = named(node)
    layout = rec.state.get(a["input"])
    if not isinstance(layout, Layout):
        return NotImplemented
    pad, nd = list(a["pad"]), rec.values[node].ndim
    i = 2 * (nd - 1 - layout.axis)
    before, after = (pad[i], pad[i + 1]) if i + 1 < len(pad) else (0, 0)
    if before == after == 0:
        return Layout(layout.axis, layout.segs)
    if a.get("mode", "constant") != "constant" or before < 0 or after < 0:
        return rec.freeze(node, [layout], "it pads or crops the channels")
    segs = [*(rec.units.layout(layout.axis, before).segs if before else ()), *layout.segs,
            *(rec.units.layout(layout.axis, after).segs if after else ())]
    return Layout(layout.axis, tuple(segs))

def split(rec: Record, node: fx.Node) -> NodeState:
    x = node.args[0]
    layout = rec.state.get(x)
    if not isinstance(layout, Layout):
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

def group_norm(rec: Record, node: fx.Node) -> NodeState:
    a = named(node)
    layout = rec.state.get(a["input"])
    params = [p for p in (a.get("weight"), a.get("bias")) if p is not None]
    if not isinstance(layout, Layout) or layout.axis != 1 or \
            any(not (isinstance(rec.state[p], Param) and rec.state[p].prov[0]) for p in params):
        return NotImplemented
    groups, size = int(a["num_groups"]), layout.length
    if groups > 1 and not rec.units.cut_at(layout, [size // groups * i for i in range(1, groups)]):
        return rec.freeze(node, [layout], "its GroupNorm groups cut through its units' blocks")
    for p in params:
        for key, ax in rec.state[p].prov[0]:
            rec.bind(key, ax, "out", layout, node)
    return Layout(1, layout.segs)



STRUCTURAL = {**dict.fromkeys(VIEWS, view), aten.cat: cat, aten.slice: slice_, aten.pad: pad,
              aten.constant_pad_nd: pad, aten.split: split, aten.split_with_sizes: split, aten.chunk: split,
              aten.group_norm: group_norm}
