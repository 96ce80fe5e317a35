"""The alignment graph: which parameter axes which units index, read off the model's ATen graph.

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
    """Units that fusion cannot follow through an operation: they stay in place (vanilla averaging).

    Examples:
        A channel shuffle mixes the first layer's units; they stay in place:

        >>> import warnings
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ChannelShuffle(2), nn.Conv2d(4, 2, 1))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     graph = build_graph(model, torch.randn(2, 1, 3, 3))
        >>> [w.category.__name__ for w in caught]
        ['FrozenUnitsWarning']
        >>> print(caught[0].message)
        fusion: aten.channel_shuffle (node 'channel_shuffle') in module '1' (ChannelShuffle): ...
    """


@dataclass(frozen=True)
class Segment:
    """A run of all of one group's units along an axis.

    Each unit covers `inner` consecutive elements; the run repeats `outer` times.

    Examples:
        After a flatten of (4, 2, 2) feature maps, the linear layer reads each of the convolution's
        4 units as a block of 4 features:

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
        >>> graph = build_graph(model, torch.randn(2, 1, 4, 4))
        >>> graph.layers[1].ins
        (Segment(group=1, inner=4, outer=1),)
    """

    group: int
    inner: int = 1
    outer: int = 1


@dataclass(frozen=True)
class Binding:
    """One axis of one parameter or buffer (a state_dict key), indexed by units.

    `role` is "out" (one value per unit) or "in" (the units are consumed); `segments` are the units
    along `axis`, in order.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> graph = build_graph(model, torch.randn(2, 3))
        >>> [(b.name, b.axis, b.role) for b in graph.bindings if b.name.startswith("2.")]
        [('2.weight', 0, 'out'), ('2.weight', 1, 'in'), ('2.bias', 0, 'out')]
    """

    name: str
    axis: int
    role: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Feature:
    """Where a group's activations are read, for the activation-based ground metric.

    Channels [start, stop) along `axis` of the output of call number `call` of module `module` (a
    tensor of `rank` dimensions); `after` holds the elementwise functions that alone read that
    output (a ReLU, GELU, ...), applied to it when activations are read after the nonlinearity
    (`acts_at="post"`).

    Examples:
        A convolution followed by BatchNorm: its units are read after the norm.

        >>> import torch
        >>> from torch import nn
        >>> layers = [nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1)]
        >>> graph = build_graph(nn.Sequential(*layers), torch.randn(2, 1, 4, 4))
        >>> [(f.module, f.call, f.axis, f.start, f.stop, f.rank) for f in graph.groups[1].features]
        [('1', 0, 1, 0, 4, 4)]
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
    """A call of a linear or convolution layer (a producer of units), in forward order.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> graph = build_graph(model, torch.randn(2, 3))
        >>> [(lay.name, lay.kind, lay.weight, lay.out_axis, lay.in_axis) for lay in graph.layers]
        [('0', 'linear', '0.weight', 0, 1), ('2', 'linear', '2.weight', 0, 1)]
    """

    name: str  # module path of its weight
    kind: str  # "linear", "conv" or "conv_transpose"
    weight: str  # state_dict key of the weight
    bias: str | None
    out_axis: int  # axis of the weight indexed by the output units
    in_axis: int  # axis of the weight indexed by the input units
    out: tuple[Segment, ...]  # the output units along out_axis
    ins: tuple[Segment, ...]  # the input units along in_axis (empty: fixed or not followed)
    detail: tuple = ()  # operation and hyper-parameters two models must share


@dataclass(frozen=True)
class Group:
    """Units that share one transport map.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> graph = build_graph(model, torch.randn(2, 3))
        >>> [(g.size, g.fixed, g.producers, g.reason) for g in graph.groups]
        [(3, True, (), 'input'), (4, False, ('0',), ''), (2, True, ('2',), 'output')]
    """

    size: int
    fixed: bool  # never transported (network input or output, frozen)
    producers: tuple[str, ...]  # layers whose output units these are, in forward order
    features: tuple[Feature, ...]  # where their pre-activations are read (one per producer call)
    reason: str = ""  # why the group is fixed


@dataclass(frozen=True)
class AlignmentGraph:
    """Producers in forward order, the unit groups, and every parameter axis they index.

    `input_group` and `output_group` are the groups of the network's input and output channels (-1
    if none), `frozen` the message of each operation whose units were frozen, `calls` the number of
    calls on the example of each module that holds parameters, and `heads` each attention's heads
    as groups (queries and keys, then values), where heads can trade places.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> graph = build_graph(model, torch.randn(2, 3))
        >>> graph.input_group, graph.output_group, graph.frozen, graph.calls
        (0, 2, (), (('0', 1), ('2', 1)))
    """

    layers: tuple[Layer, ...]
    groups: tuple[Group, ...]
    bindings: tuple[Binding, ...]
    input_group: int
    output_group: int
    frozen: tuple[str, ...] = ()  # one message per operation whose units were frozen
    # modules holding parameters: calls per forward on the example
    calls: tuple[tuple[str, int], ...] = ()
    # per attention: each head's groups (Q/K, then V)
    heads: tuple[tuple[tuple[int, ...], ...], ...] = ()

    def spans(self, segments: tuple[Segment, ...]) -> list[tuple[Segment, int, int]]:
        """Where each segment lies along its axis, with this model's group sizes.

        Args:
            segments: the segments along one axis, in order (a binding's or a layer's).

        Returns:
            (segment, first element, number of elements) of each segment.
        """
        out, off = [], 0
        for seg in segments:
            length = self.groups[seg.group].size * seg.inner * seg.outer
            out.append((seg, off, length))
            off += length
        return out

    def signature(self) -> tuple:
        """Everything two models must share to be aligned.

        Returns:
            The layers, wiring, bindings, fixed group sizes and attention heads, comparable with
            `==`.
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
    """Return the nodes whose every use leads to the output without another layer."""
    terminal: set[fx.Node] = set()
    for node in reversed(list(rec.tr.graph.nodes)):
        if node.op == "output":
            terminal.add(node)
        elif node.users and all(u in terminal and not _weighted(rec, u) for u in node.users):
            terminal.add(node)
    return terminal


def _weighted(rec: Record, node: fx.Node) -> bool:
    """Return whether the node is a layer, or an operation with a weight matrix among its inputs."""
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
    """Resolve a finished walk's provisional groups into the alignment graph.

    Freeze events after the output layer are dropped (their units are fixed anyway).

    Args:
        rec: the walk's record.
        strict: raise on the first frozen operation instead of listing it.
        owners: paths of the modules that hold parameters themselves.

    Returns:
        The alignment graph.

    Raises:
        LandscapeError: `strict` is set and some operation's units were frozen.
    """
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

    # tied weights: every name moves alike
    bindings = tuple(
        Binding(alias, ax, role, segments(lay))
        for (key, ax), (role, lay) in rec.bindings.items()
        for alias in rec.tr.aliases.get(key, (key,))
    )
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
    """Return each attention call's heads as final groups, where the heads can trade places.

    That is: every head made of movable groups of the same sizes, no group in two heads (one entry
    per attention module).
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
    """Return the paths of the modules that hold parameters themselves (registered once)."""
    seen: dict[int, list[str]] = {}
    for path, m in model.named_modules(remove_duplicate=False):
        if path and next(m.parameters(recurse=False), None) is not None:
            seen.setdefault(id(m), []).append(path)
    return sorted(paths[0] for paths in seen.values() if len(paths) == 1)


def build_graph(
    model: nn.Module, example: torch.Tensor, *, strict: bool = False, warn: bool = True
) -> AlignmentGraph:
    """The alignment graph of `model`, traced on `example` in eval mode.

    Operations whose units cannot be followed freeze those units (they stay in place) with one
    `FrozenUnitsWarning` per operation (`warn=False`: only listed in `graph.frozen`); `strict=True`
    raises a one-line `LandscapeError` instead. A model `torch.export` cannot trace, or that does
    not run on `example`, is a one-line `LandscapeError` too.

    Args:
        model: the model (its training mode is kept).
        example: a batch of at least one input: a tensor, a tuple of positional arguments or a
            dict of keyword arguments.
        strict: raise instead of freezing units.
        warn: warn once per frozen operation.

    Returns:
        The layers, unit groups and bindings of the model.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> graph = build_graph(model, torch.randn(2, 3))
        >>> [g.size for g in graph.groups], [lay.name for lay in graph.layers]
        ([3, 4, 2], ['0', '2'])

        With an operation fusion cannot follow:

        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ChannelShuffle(2), nn.Conv2d(4, 2, 1))
        >>> build_graph(model, torch.randn(2, 1, 3, 3), warn=False).frozen
        ("aten.channel_shuffle (node 'channel_shuffle') in module '1' (ChannelShuffle): ...",)
        >>> build_graph(model, torch.randn(2, 1, 3, 3), strict=True)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: strict fusion: aten.channel_shuffle ...
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
