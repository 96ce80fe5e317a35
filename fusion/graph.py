"""The alignment graph: which axis of which parameter is indexed by which units, read off the
model's ATen graph.

The model is exported once on an example batch (`fusion/export.py`). Walking the graph in order
(`fusion/walk.py`), every tensor gets the layout of its channel axis (`fusion/layout.py`): segments
of unit groups. Linear and convolution layers create a group (their output units) and consume the
layout of their input; everything else either moves the layout (reshapes and flattens, slices,
concatenation, zero padding, splits: `fusion/structural.py`), merges layouts (residual adds, gates,
and any other operation with several inputs), or is tested numerically (`fusion/equivariance.py`):
the operation is re-run with its inputs' channels permuted; if the output is the same permutation of
the original output, the layout passes through; if it is unchanged, the output carries no units (a
reduction over channels); otherwise the operation is not understood and the units reaching it are
frozen, with a one-line warning naming the node (an error with `strict=True`). Per-channel
parameters met on the way (norms, scales) are bound to the layout when the test passes with them
permuted too. Operations after the logits are never a reason to warn: their units are fixed.

Every parameter axis that units index is recorded as a `Binding`: "out" (the parameter holds one
value per unit: weight rows, biases, norm parameters and statistics, depthwise filters) or "in" (the
units are consumed: the input columns of a linear or convolution layer, in blocks after a flatten).
Aligning a model moves every binding by its groups' transport maps; nothing else is touched. This
module holds those public types and the finishing step that resolves the walk's provisional groups
into them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import fx, nn

from landscape.errors import LandscapeError, LandscapeWarning

from .export import trace
from .layout import Layout, Resolved, resolve
from .record import Param, Record
from .walk import Walk


class FrozenUnitsWarning(LandscapeWarning):
    """Units that fusion cannot follow through an operation: they stay in place (vanilla
    averaging).
    """


@dataclass(frozen=True)
class Segment:
    """A run of one group's units along an axis: each unit covers `inner` consecutive elements; the
    run of all the group's units repeats `outer` times.
    """

    group: int
    inner: int = 1
    outer: int = 1


@dataclass(frozen=True)
class Binding:
    """One axis of one parameter or buffer (a state_dict key), indexed by units: "out" or "in" (see
    module doc).
    """

    name: str
    axis: int
    role: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Feature:
    """Where a group's pre-activations are read: channels [start, stop) along `axis` of the output
    of call number `call` of module `module` (a tensor of `rank` dimensions).
    """

    module: str
    call: int
    axis: int
    start: int
    stop: int
    rank: int = 0
    # the elementwise functions that follow that output (`fusion.elementwise.chain`)
    after: tuple = ()


@dataclass(frozen=True)
class Layer:
    """A call of a linear or convolution layer (a producer of units), in forward order."""

    name: str  # module path of its weight
    kind: str  # "linear", "conv" or "conv_transpose"
    weight: str  # state_dict key of the weight
    bias: str | None
    out_axis: int  # axis of the weight indexed by the output units
    in_axis: int  # axis of the weight indexed by the input units
    out: tuple[Segment, ...]  # the output units along out_axis
    ins: tuple[Segment, ...]  # the input units along in_axis (empty: fixed or not followed)
    detail: tuple = ()  # operation and hyper-parameters two models must share

    @property
    def group(self) -> int:
        """The group of its output units (the first one if GroupNorm or slicing cut them into
        several).
        """
        return self.out[0].group

    @property
    def in_group(self) -> int:
        return self.ins[0].group if self.ins else -1

    @property
    def in_block(self) -> int:
        return self.ins[0].inner if self.ins else 1


@dataclass(frozen=True)
class Group:
    """Units that share one transport map."""

    size: int
    fixed: bool  # never transported (network input or output, frozen)
    producers: tuple[str, ...]  # layers whose output units these are, in forward order
    features: tuple[Feature, ...]  # where their pre-activations are read (one per producer call)
    reason: str = ""  # why the group is fixed


@dataclass(frozen=True)
class AlignmentGraph:
    """Producers in forward order, the unit groups, and every parameter axis they index."""

    layers: tuple[Layer, ...]
    groups: tuple[Group, ...]
    bindings: tuple[Binding, ...]
    input_group: int
    output_group: int
    frozen: tuple[str, ...] = ()  # one message per operation whose units were frozen
    calls: tuple[
        tuple[str, int], ...
    ] = ()  # modules holding parameters: calls per forward on the example
    heads: tuple[
        tuple[tuple[int, ...], ...], ...
    ] = ()  # per attention: each head's groups (Q/K, then V)

    def layer(self, name: str) -> Layer:
        """The (first call of the) layer called `name`."""
        return next(lay for lay in self.layers if lay.name == name)

    def spans(self, segments: tuple[Segment, ...]) -> list[tuple[Segment, int, int]]:
        """(segment, first element, number of elements) of each segment, with this model's group
        sizes.
        """
        out, off = [], 0
        for seg in segments:
            length = self.groups[seg.group].size * seg.inner * seg.outer
            out.append((seg, off, length))
            off += length
        return out

    def signature(self) -> tuple:
        """Everything two models must share to be aligned: layers, wiring, bindings and fixed group
        sizes.
        """
        return (
            tuple((lay.name, lay.kind, lay.out, lay.ins, lay.detail) for lay in self.layers),
            tuple((b.name, b.axis, b.role, b.segments) for b in self.bindings),
            tuple((g.fixed, g.size if g.fixed else None, len(g.features)) for g in self.groups),
            self.heads,
        )


# ------------------------------------------------------------------------------------------------
# finishing
def _terminal(rec: Record) -> set[fx.Node]:
    """Nodes whose every use leads to the output without another layer: units there never move."""
    terminal: set[fx.Node] = set()
    for node in reversed(list(rec.tr.graph.nodes)):
        if node.op == "output":
            terminal.add(node)
        elif node.users and all(u in terminal and not _weighted(rec, u) for u in node.users):
            terminal.add(node)
    return terminal


def _weighted(rec: Record, node: fx.Node) -> bool:
    if node in rec.producer_nodes:
        return True
    return (
        any(
            isinstance(rec.state.get(n), Param) and sum(s > 1 for s in rec.shape(n)) >= 2
            for n in rec.tensor_inputs(node)
        )
        if node.op == "call_function"
        else False
    )


def _finish(rec: Record, strict: bool, owners: list[str]) -> AlignmentGraph:
    terminal = _terminal(rec)
    silent = {e for e, (node, _) in enumerate(rec.events) if node in terminal}
    for f in rec.units.fixes:
        if f.event in silent:
            f.event, f.reason = -1, "after the output layer"
    referenced = [s for _, lay in rec.bindings.values() for s in lay.segs]
    referenced += [
        s for p in rec.producers for lay in (p.out, p.ins) if lay is not None for s in lay.segs
    ]
    referenced += [seg for _, _, seg in rec.features]
    referenced += [
        s for lay in [*rec.output_layouts, rec.input_layout] if lay is not None for s in lay.segs
    ]
    referenced += [s for heads in rec.heads for head in heads for s in head]
    res = resolve(rec.units, referenced)

    def segments(layout: Layout | None) -> tuple[Segment, ...]:
        if layout is None:
            return ()
        return tuple(Segment(*run) for s in layout.segs for run in res.segments(s))

    bindings = tuple(
        Binding(alias, ax, role, segments(lay))
        for (key, ax), (role, lay) in rec.bindings.items()
        for alias in rec.tr.aliases.get(key, (key,))
    )  # tied weights: every name moves alike
    layers = tuple(
        Layer(
            p.name,
            p.kind,
            p.weight,
            p.bias,
            p.out_axis,
            p.in_axis,
            segments(p.out),
            segments(p.ins),
            p.detail,
        )
        for p in rec.producers
    )
    producers: dict[int, list[str]] = {}
    for lay in layers:
        for seg in lay.out:
            if lay.name not in producers.setdefault(seg.group, []):
                producers[seg.group].append(lay.name)
    features: dict[int, list[Feature]] = {}
    for hook, axis, seg in rec.features:
        for a, b in res.pieces[seg.group]:
            if hook is not None and seg.start <= a and b <= seg.start + seg.n:
                features.setdefault(res.klass[(seg.group, a)], []).append(
                    Feature(hook[0], hook[1], axis, a - seg.start, b - seg.start, *hook[2:])
                )
    groups = tuple(
        Group(
            size,
            bool(res.fixed[k]),
            tuple(producers.get(k, ())),
            tuple(features.get(k, ())),
            res.fixed[k],
        )
        for k, size in enumerate(res.sizes)
    )
    messages = []
    for e, (node, why) in enumerate(rec.events):
        hit = [k for k in range(len(groups)) if e in res.events[k]]
        if e in silent or (hit and all(res.base[k] for k in hit)):
            continue
        left = f"{len(hit)} unit group(s) left in place" if hit else "they are left in place"
        messages.append(f"{rec.where(node)}: {why}; {left}")
    if strict and messages:
        raise LandscapeError(
            f"strict fusion: {messages[0]} (strict=False averages them as in vanilla averaging)"
        )
    in_group = segments(rec.input_layout)[0].group if rec.input_layout is not None else -1
    out_group = (
        segments(rec.output_layouts[0])[0].group
        if rec.output_layouts and rec.output_layouts[0].segs
        else -1
    )
    calls = tuple((path, rec.tr.calls.get(path, 0)) for path in owners)
    return AlignmentGraph(
        layers,
        groups,
        bindings,
        in_group,
        out_group,
        tuple(messages),
        calls,
        _heads(rec, res, groups),
    )


def _heads(
    rec: Record, res: Resolved, groups: tuple[Group, ...]
) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Each attention call's heads as final groups, kept where the heads can trade places: every
    head made of movable groups of the same sizes, no group in two heads (one entry per attention
    module).
    """
    out = []
    for heads in rec.heads:
        final = tuple(tuple(k for s in head for k, _, _ in res.segments(s)) for head in heads)
        flat = [k for head in final for k in head]
        sizes = {tuple(groups[k].size for k in head) for head in final}
        if (
            len(sizes) == 1
            and len(set(flat)) == len(flat)
            and not any(groups[k].fixed for k in flat)
            and final not in out
        ):
            out.append(final)
    return tuple(out)


def _owners(model: nn.Module) -> list[str]:
    """Paths of the modules that hold parameters themselves (each registered under one name)."""
    seen: dict[int, list[str]] = {}
    for path, m in model.named_modules(remove_duplicate=False):
        if path and next(m.parameters(recurse=False), None) is not None:
            seen.setdefault(id(m), []).append(path)
    return sorted(paths[0] for paths in seen.values() if len(paths) == 1)


def build_graph(
    model: nn.Module, example: torch.Tensor, *, strict: bool = False, warn: bool = True
) -> AlignmentGraph:
    """The alignment graph of `model`, traced on `example` (a batch of at least one input, eval
    mode).

    Operations whose units cannot be followed freeze those units (they stay in place) with one
    `FrozenUnitsWarning` per operation (`warn=False`: only listed in `graph.frozen`); `strict=True`
    raises a one-line `LandscapeError` instead.
    """
    walk = Walk(trace(model, example))
    walk.run()
    graph = _finish(walk, strict, _owners(model))
    if warn:
        for message in graph.frozen:
            warnings.warn(f"fusion: {message}", FrozenUnitsWarning, stacklevel=2)
    return graph


__all__ = [
    "AlignmentGraph",
    "Binding",
    "Feature",
    "FrozenUnitsWarning",
    "Group",
    "Layer",
    "Segment",
    "build_graph",
]
