"""The alignment graph: which axis of which parameter is indexed by which units, read off the model's ATen graph.

The model is exported once on an example batch (`fusion/export.py`). Walking the graph in order, every tensor
gets the layout of its channel axis (`fusion/layout.py`): segments of unit groups. Linear and convolution
layers create a group (their output units) and consume the layout of their input; everything else either
moves the layout (reshapes and flattens, slices, concatenation, zero padding, splits), merges layouts
(residual adds, gates, and any other operation with several inputs), or is tested numerically: the operation
is re-run with its inputs' channels permuted (a random permutation per segment, on random data); if the output
is the same permutation of the original output (on whichever axis matches), the layout passes through; if it
is unchanged, the output carries no units (a reduction over channels); otherwise the operation is not
understood and the units reaching it are frozen, with a one-line warning naming the node (an error with
`strict=True`). Per-channel parameters met on the way (norms, scales) are bound to the layout when the test
passes with them permuted too. Operations after the logits are never a reason to warn: their units are fixed.

Every parameter axis that units index is recorded as a `Binding`: "out" (the parameter holds one value per unit:
weight rows, biases, norm parameters and statistics, depthwise filters) or "in" (the units are consumed: the
input columns of a linear or convolution layer, in blocks after a flatten). Aligning a model moves every
binding by its groups' transport maps; nothing else is touched.
"""
from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass, replace

import torch
from torch import fx, nn
from torch.fx.operator_schemas import normalize_function
from torch.utils import _pytree as pytree

from landscape.errors import LandscapeError, LandscapeWarning

from .layout import Layout, Seg, Units, resolve
from .export import Trace, trace

aten = torch.ops.aten


class FrozenUnitsWarning(LandscapeWarning):
    """Units that fusion cannot follow through an operation: they stay in place (vanilla averaging)."""


@dataclass(frozen=True)
class Segment:
    """A run of one group's units along an axis: each unit covers `inner` consecutive elements; the run of
    all the group's units repeats `outer` times."""

    group: int
    inner: int = 1
    outer: int = 1


@dataclass(frozen=True)
class Binding:
    """One axis of one parameter or buffer (a state_dict key), indexed by units: "out" or "in" (see module doc)."""

    name: str
    axis: int
    role: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Feature:
    """Where a group's pre-activations are read: channels [start, stop) along `axis` of the output of
    call number `call` of module `module` (a tensor of `rank` dimensions)."""

    module: str
    call: int
    axis: int
    start: int
    stop: int
    rank: int = 0


@dataclass(frozen=True)
class Layer:
    """A call of a linear or convolution layer (a producer of units), in forward order."""

    name: str                       # module path of its weight
    kind: str                       # "linear", "conv" or "conv_transpose"
    weight: str                     # state_dict key of the weight
    bias: str | None
    out_axis: int                   # axis of the weight indexed by the output units
    in_axis: int                    # axis of the weight indexed by the input units
    out: tuple[Segment, ...]        # the output units along out_axis
    ins: tuple[Segment, ...]        # the input units along in_axis (empty: fixed or not followed)
    detail: tuple = ()              # operation and hyper-parameters two models must share

    @property
    def group(self) -> int:
        """The group of its output units (the first one if GroupNorm or slicing cut them into several)."""
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
    fixed: bool                     # never transported (network input or output, frozen)
    producers: tuple[str, ...]      # layers whose output units these are, in forward order
    features: tuple[Feature, ...]   # where their pre-activations are read (one per producer call)
    reason: str = ""                # why the group is fixed


@dataclass(frozen=True)
class AlignmentGraph:
    """Producers in forward order, the unit groups, and every parameter axis they index."""

    layers: tuple[Layer, ...]
    groups: tuple[Group, ...]
    bindings: tuple[Binding, ...]
    input_group: int
    output_group: int
    frozen: tuple[str, ...] = ()    # one message per operation whose units were frozen
    calls: tuple[tuple[str, int], ...] = ()   # modules holding parameters: calls per forward on the example

    def layer(self, name: str) -> Layer:
        """The (first call of the) layer called `name`."""
        return next(lay for lay in self.layers if lay.name == name)

    def spans(self, segments: tuple[Segment, ...]) -> list[tuple[Segment, int, int]]:
        """(segment, first element, number of elements) of each segment, with this model's group sizes."""
        out, off = [], 0
        for seg in segments:
            length = self.groups[seg.group].size * seg.inner * seg.outer
            out.append((seg, off, length))
            off += length
        return out

    def signature(self) -> tuple:
        """Everything two models must share to be aligned: layers, wiring, bindings and fixed group sizes."""
        return (tuple((lay.name, lay.kind, lay.out, lay.ins, lay.detail) for lay in self.layers),
                tuple((b.name, b.axis, b.role, b.segments) for b in self.bindings),
                tuple((g.fixed, g.size if g.fixed else None, len(g.features)) for g in self.groups))


@dataclass(frozen=True)
class _Fixed:
    """A tensor that carries no movable units."""

    from_input: bool = False      # computed from the network input only (before the first layer)


@dataclass(frozen=True)
class _Param:
    """A parameter or buffer, or a tensor computed from them alone: per axis, the (state key, axis) it follows."""

    prov: tuple[tuple[tuple[str, int], ...], ...]


@dataclass(frozen=True)
class _Producer:
    name: str
    kind: str
    weight: str
    bias: str | None
    out_axis: int
    in_axis: int
    out: Layout
    ins: Layout | None
    detail: tuple


PRODUCERS = {aten.linear, aten.conv1d, aten.conv2d, aten.conv3d, aten.convolution, aten._convolution,
             aten.conv_transpose1d, aten.conv_transpose2d, aten.conv_transpose3d}
VIEWS = {aten.view, aten.reshape, aten._unsafe_view, aten.flatten, aten.unflatten, aten.squeeze, aten.unsqueeze,
         aten._reshape_alias}
NORMS = {aten.batch_norm, aten.group_norm, aten.layer_norm, aten.instance_norm}
SAME_SHAPE = {aten.alias, aten.clone, aten.contiguous, aten.detach, aten._to_copy, aten.to, aten.lift_fresh_copy,
              aten.type_as}


def _named(node: fx.Node) -> dict:
    """The node's arguments by schema name, defaults filled in."""
    pair = normalize_function(node.target, tuple(node.args), dict(node.kwargs), normalize_to_only_use_kwargs=True)
    return dict(pair.kwargs) if pair is not None else {}


def _prefix(shape: tuple[int, ...]) -> list[int]:
    out = [1]
    for s in shape:
        out.append(out[-1] * s)
    return out


def _reshape(layout: Layout, before: tuple[int, ...], after: tuple[int, ...]) -> Layout | None:
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


def _is_tensor_value(v) -> bool:
    return any(isinstance(x, torch.Tensor) for x in pytree.tree_leaves(v))


def _mutates(target) -> bool:
    schema = getattr(target, "_schema", None)
    return schema is not None and any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.is_floating_point() and not a.is_complex():
        return torch.equal(a, b)
    if a.numel() and torch.isnan(a).all():
        return False
    scale = float(torch.nan_to_num(a.abs(), nan=0.0, posinf=0.0).max()) if a.numel() else 0.0
    return torch.allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, scale), equal_nan=True)


class _Builder:
    """Walks the exported graph once, recording layouts, bindings, producers and constraints."""

    def __init__(self, tr: Trace) -> None:
        self.tr = tr
        self.values = tr.values
        self.units = Units()
        self.kind: dict[fx.Node, object] = {}
        self.bindings: dict[tuple[str, int], tuple[str, Layout]] = {}
        self.producers: list[_Producer] = []
        self.producer_nodes: set[fx.Node] = set()
        self.features: list[tuple[tuple[str, int, int] | None, int, Seg]] = []
        self.param_group: dict[tuple, int] = {}
        self.events: list[tuple[fx.Node, str]] = []
        self.input_layout: Layout | None = None
        self.output_layouts: list[Layout] = []
        self.gen = torch.Generator().manual_seed(0)

    # ----------------------------------------------------------------------------------------------- walking
    def run(self) -> None:
        for node in self.tr.graph.nodes:
            if node.op == "placeholder":
                self.kind[node] = self._placeholder(node)
            elif node.op == "output":
                self._output(node)
            elif node.op == "call_function":
                self.kind[node] = self._call(node)
            else:
                raise LandscapeError(f"unsupported construct in the model: {node.op} {node.target!r}")

    def _placeholder(self, node: fx.Node):
        v = self.values[node]
        if node in self.tr.state:
            return _Param(tuple(((self.tr.state[node], a),) for a in range(v.ndim)))
        if node in self.tr.inputs and isinstance(v, torch.Tensor):
            if v.ndim >= 2 and self.input_layout is None:
                self.input_layout = self.units.layout(1, v.shape[1], fixed="input")
                return self.input_layout
            return _Fixed(True)
        return _Fixed(False)

    def _output(self, node: fx.Node) -> None:
        for leaf in pytree.tree_leaves(node.args[0]):
            if isinstance(leaf, fx.Node):
                for k in pytree.tree_leaves(self.kind.get(leaf), is_leaf=lambda x: isinstance(x, Layout)):
                    if isinstance(k, Layout):
                        self.units.fix(k, "output")
                        self.output_layouts.append(k)

    def _call(self, node: fx.Node):
        if node.target is operator.getitem:
            src = self.kind.get(node.args[0])
            return src[node.args[1]] if isinstance(src, tuple) else _Fixed(False)
        if not _is_tensor_value(self.values[node]):
            return None
        packet = getattr(node.target, "overloadpacket", None)
        if packet in PRODUCERS:
            return self._producer(node, packet)
        leaves = self._tensor_inputs(node)
        kinds = [self.kind.get(n) for n in leaves]
        layouts = [n for n in leaves if isinstance(self.kind[n], Layout)]
        if not any(not self.units.known_fixed(self.kind[n]) for n in layouts):
            if packet in VIEWS and layouts and layouts[0] is node.args[0]:
                moved = _reshape(self.kind[layouts[0]], self._shape(layouts[0]), self._shape(node))
                if moved is not None:
                    return moved
            if leaves and all(isinstance(k, _Param) for k in kinds):
                return self._param_op(node, packet, leaves)
            self._parameter_units(node, leaves)
            from_input = any(isinstance(k, Layout) or (isinstance(k, _Fixed) and k.from_input) for k in kinds)
            return self._fixed_like(self.values[node], from_input)
        handler = STRUCTURAL.get(packet)
        if handler is not None:
            result = handler(self, node)
            if result is not NotImplemented:
                return result
        return self._generic(node, leaves, layouts)

    # ----------------------------------------------------------------------------------------------- helpers
    def _shape(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(self.values[node].shape)

    def _tensor_inputs(self, node: fx.Node) -> list[fx.Node]:
        seen: dict[fx.Node, None] = {}
        for a in pytree.tree_leaves((node.args, node.kwargs)):
            if isinstance(a, fx.Node) and isinstance(self.values.get(a), torch.Tensor):
                seen[a] = None
        return list(seen)

    def _fixed_like(self, value, from_input: bool = False):
        if isinstance(value, torch.Tensor):
            return _Fixed(from_input)
        if isinstance(value, (list, tuple)):
            return tuple(_Fixed(from_input) if isinstance(v, torch.Tensor) else None for v in value)
        return None

    def where(self, node: fx.Node) -> str:
        target = node.target
        op = str(getattr(target, "overloadpacket", None) or getattr(target, "__name__", target))
        path, cls = self.tr.where.get(node, ("", ""))
        loc = f"in module '{path}' ({cls})" if path else "in the model's forward"
        return f"{op} (node '{node.name}') {loc}"

    def _event(self, node: fx.Node, why: str) -> int:
        self.events.append((node, why))
        return len(self.events) - 1

    def _freeze(self, node: fx.Node, layouts: list[Layout], why: str):
        ev = self._event(node, why)
        for layout in layouts:
            self.units.fix(layout, f"frozen at {self.where(node)}", ev)
        return self._fixed_like(self.values[node])

    def _bind(self, key: str, axis: int, role: str, layout: Layout, node: fx.Node) -> None:
        layout = layout.on(axis)
        prev = self.bindings.get((key, axis))
        if prev is None:
            self.bindings[(key, axis)] = (role, layout)
        elif prev[0] != role or not self.units.unify(prev[1], layout):
            ev = self._event(node, f"parameter '{key}' is used by units in two incompatible ways")
            for lay in (prev[1], layout):
                self.units.fix(lay, f"frozen at {self.where(node)}", ev)

    def _random(self, v: torch.Tensor, data: bool) -> torch.Tensor:
        """Random values shaped like `v`: normal for data, in [0.5, 1.5) for parameters and constants (valid
        variances and divisors); integer and boolean tensors keep their recorded values."""
        if not v.is_floating_point():
            return v.clone()
        r = torch.randn(v.shape, generator=self.gen, dtype=torch.float64) if data else \
            torch.rand(v.shape, generator=self.gen, dtype=torch.float64) + 0.5
        return r.to(device=v.device, dtype=v.dtype)

    def _perms(self, layout: Layout, device) -> list[torch.Tensor]:
        """Two element permutations of the layout's axis that permute units within each segment: a random
        cycle through all units, and the transposition of two units adjacent on that cycle (together they
        generate every permutation of the segment). Segments of the same units get the same permutation."""
        cycle, swap, off, memo = [], [], 0, {}
        for s in layout.segs:
            key = (s.group, s.start, s.n)
            if key not in memo:
                order = torch.randperm(s.n, generator=self.gen)
                c, t = torch.arange(s.n), torch.arange(s.n)
                if s.n > 1:
                    c[order] = order.roll(-1)
                    t[order[0]], t[order[1]] = order[1], order[0]
                memo[key] = (c, t)
            for units, out in zip(memo[key], (cycle, swap)):
                idx = (units[:, None] * s.inner + torch.arange(s.inner)[None]).reshape(-1)
                block = s.n * s.inner
                out.extend((idx[None] + block * torch.arange(s.outer)[:, None] + off).reshape(-1).tolist())
            off += s.length
        return [torch.tensor(p, device=device) for p in (cycle, swap)]

    def _run(self, node: fx.Node, env: dict[fx.Node, object]):
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env.get(n, self.values[n]))
        if _mutates(node.target):
            args, kwargs = pytree.tree_map(lambda v: v.clone() if isinstance(v, torch.Tensor) else v, (args, kwargs))
        try:
            with torch.no_grad():
                return node.target(*args, **kwargs)
        except Exception:  # noqa: BLE001 -- an operation that cannot run on permuted inputs is not equivariant
            return None

    # ------------------------------------------------------------------------------------------- producers
    def _producer(self, node: fx.Node, packet):
        a = _named(node)
        x, w, b = a.get("input"), a.get("weight"), a.get("bias")
        linear = packet is aten.linear
        transposed = bool(a.get("transposed", packet in (aten.conv_transpose1d, aten.conv_transpose2d,
                                                         aten.conv_transpose3d)))
        groups = int(a.get("groups", 1))
        kind = "linear" if linear else "conv_transpose" if transposed else "conv"
        out_axis, in_axis = (1, 0) if transposed else (0, 1)
        xk, wk = self.kind.get(x), self.kind.get(w)
        bk = self.kind.get(b) if isinstance(b, fx.Node) else None
        xv, out = self.values[x], self.values[node]
        cax = xv.ndim - 1 if linear else 1
        oax = out.ndim - 1 if linear else 1
        n_out = out.shape[oax]
        detail = (str(packet), b is not None,
                  *(f"{k}={v}" for k, v in a.items() if k not in ("input", "weight", "bias")))
        x_layout = xk if isinstance(xk, Layout) and not self.units.known_fixed(xk) else None
        if not isinstance(wk, _Param) or not wk.prov[out_axis] or (groups == 1 and not wk.prov[in_axis]) or \
                (b is not None and not (isinstance(bk, _Param) and bk.prov[0])) or (transposed and groups != 1):
            why = "grouped transposed convolution" if transposed and groups != 1 else \
                "its weight or bias is computed in forward, not a parameter"
            ev = self._event(node, why)
            layout = self.units.layout(oax, n_out)
            for lay in ([x_layout] if x_layout else []) + [layout]:
                self.units.fix(lay, f"frozen at {self.where(node)}", ev)
            return layout
        in_layout = xk if isinstance(xk, Layout) and xk.axis == cax else None
        passthrough = None
        if x_layout is not None and x_layout.axis != cax:
            if linear:     # a linear layer along another axis: the channels pass through it
                passthrough = x_layout
            else:
                self._freeze(node, [x_layout], "its input channels are not on the channel axis")
        if not linear and not transposed and groups > 1:
            c_in = xv.shape[1]
            if groups == c_in and n_out % c_in == 0:     # depthwise: each output channel follows its input channel
                if in_layout is None:
                    return _Fixed(isinstance(xk, Layout) or (isinstance(xk, _Fixed) and xk.from_input))
                mult = n_out // c_in
                if any(s.outer != 1 for s in in_layout.segs):
                    return self._freeze(node, [in_layout], "depthwise convolution over repeated channels")
                layout = Layout(1, tuple(replace(s, inner=s.inner * mult) for s in in_layout.segs))
                for key, ax in wk.prov[out_axis]:
                    self._bind(key, ax, "out", layout, node)
                if bk is not None:
                    for key, ax in bk.prov[0]:
                        self._bind(key, ax, "out", layout, node)
                return layout
            if in_layout is not None and not self.units.known_fixed(in_layout):
                self._freeze(node, [in_layout], f"grouped convolution (groups={groups}) reads channel groups")
            in_layout = None
        key = wk.prov[out_axis]
        g = self.param_group.get(key)
        if g is None:
            g = self.param_group[key] = self.units.new(n_out)
        layout = Layout(oax, (Seg(g, 0, n_out),))
        if groups > 1:     # output channels stay within their convolution group
            self.units.cut_at(layout, [n_out // groups * i for i in range(1, groups)])
        for k, ax in wk.prov[out_axis]:
            self._bind(k, ax, "out", layout, node)
        if in_layout is not None:
            for k, ax in wk.prov[in_axis]:
                self._bind(k, ax, "in", in_layout, node)
        if bk is not None:
            for k, ax in bk.prov[0]:
                self._bind(k, ax, "out", layout, node)
        weight, w_out = wk.prov[out_axis][0]
        w_in = next((ax for k, ax in wk.prov[in_axis] if k == weight), None) if in_layout is not None else None
        self.producers.append(_Producer(weight.rsplit(".", 1)[0] if "." in weight else weight, kind, weight,
                                        bk.prov[0][0][0] if bk is not None else None, w_out,
                                        w_in if w_in is not None else -1, layout,
                                        in_layout if w_in is not None else None, detail))
        self.producer_nodes.add(node)
        self._feature(node, layout)
        if passthrough is not None:
            ev = self._event(node, "a linear layer applied along a non-channel axis")
            self.units.fix(layout, f"frozen at {self.where(node)}", ev)
            return passthrough
        return layout

    def _feature(self, node: fx.Node, layout: Layout) -> None:
        """A producer's pre-activations: its output, or the output of the norm that alone reads it."""
        spot = node
        if len(node.users) == 1:
            user = next(iter(node.users))
            if getattr(user.target, "overloadpacket", None) in NORMS and user.args[0] is node:
                spot = user
        spot = spot if spot in self.tr.module_output else node
        hook = self.tr.module_output.get(spot)
        if hook is not None:
            hook = (*hook, self.values[spot].ndim)
        self.features.append((hook, layout.axis, layout.segs[0]))

    def _parameter_units(self, node: fx.Node, leaves: list[fx.Node]) -> None:
        """An operation on data that carries no units, with parameters whose sizes appear in its output but in
        none of its data inputs (an embedding, a recurrent layer, a matmul with a weight): its output has units
        that only those parameters define, which fusion cannot follow. They stay in place, with a warning."""
        params = [self._shape(n) for n in leaves if isinstance(self.kind[n], _Param)]
        data = {s for n in leaves if isinstance(self.kind[n], Layout) or
                (isinstance(self.kind[n], _Fixed) and self.kind[n].from_input) for s in self._shape(n)}
        sizes = {s for shape in params if sum(d > 1 for d in shape) >= 2 for s in shape if s > 1}
        outs = [v for v in pytree.tree_leaves(self.values[node]) if isinstance(v, torch.Tensor)]
        if params and data and any(s in sizes and s not in data for v in outs for s in v.shape):
            self._event(node, "its output units are defined by parameters that fusion does not know how to move")

    # ---------------------------------------------------------------------------------- parameter-only ops
    def _param_op(self, node: fx.Node, packet, leaves: list[fx.Node]):
        out = self.values[node]
        if not isinstance(out, torch.Tensor):
            return self._fixed_like(out)
        prov: list[tuple] = [()] * out.ndim
        src = self.kind[leaves[0]]
        before = self._shape(leaves[0])
        if packet in VIEWS:
            for a, p in enumerate(src.prov):
                if p and before[a] > 1:
                    moved = _reshape(Layout(a, (Seg(-1, 0, before[a]),)), before, tuple(out.shape))
                    if moved is not None and moved.segs == (Seg(-1, 0, before[a]),):
                        prov[moved.axis] = p
        elif packet in (aten.permute, aten.transpose, aten.t, aten.expand, aten.slice) or packet in SAME_SHAPE:
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
                    s = self._shape(n)
                    a = k - (out.ndim - len(s))
                    if a >= 0 and s[a] == out.shape[k] > 1:
                        srcs.append((n, a))
                if not srcs or any(not self.kind[n].prov[a] for n, a in srcs):
                    continue
                perm = self._perms(Layout(0, (Seg(-1, 0, out.shape[k]),)), out.device)[0]
                base = {n: self._random(self.values[n], data=False) for n in leaves}
                moved = dict(base)
                for n, a in srcs:
                    moved[n] = base[n].index_select(a, perm)
                b, m = self._run(node, base), self._run(node, moved)
                if isinstance(b, torch.Tensor) and isinstance(m, torch.Tensor) and _close(m, b.index_select(k, perm)):
                    prov[k] = tuple(dict.fromkeys(p for n, a in srcs for p in self.kind[n].prov[a]))
        return _Param(tuple(prov))

    # --------------------------------------------------------------------------------------------- generic
    def _param_axis(self, shape: tuple[int, ...], rank: int, axis: int, size: int) -> int | None:
        """The axis of a parameter that would index channels: the broadcast-aligned one, else the first of
        that size (a norm's 1-D parameters)."""
        a = axis - (rank - len(shape))
        if 0 <= a < len(shape) and shape[a] == size:
            return a
        return next((d for d, s in enumerate(shape) if s == size), None)

    def _generic(self, node: fx.Node, leaves: list[fx.Node], layouts: list[fx.Node]):
        live = [n for n in layouts if not self.units.known_fixed(self.kind[n])]
        ref_node = live[0]
        ref = self.kind[ref_node]
        size, rank = ref.length, self.values[ref_node].ndim
        if any(self.kind[n].length != size for n in layouts):
            return self._freeze(node, [self.kind[n] for n in layouts], "its inputs have different numbers of channels")
        device = self.values[ref_node].device
        perms = self._perms(ref, device)
        base = {n: self._random(self.values[n], data=n in layouts) for n in leaves}
        params, fixed = {}, []
        for n in leaves:
            k = self.kind[n]
            if isinstance(k, _Param):
                ax = self._param_axis(self._shape(n), rank, ref.axis, size)
                if ax is not None and k.prov[ax]:
                    params[n] = ax
                    continue
            if isinstance(k, (_Param, _Fixed)):
                s = self._shape(n)
                a = ref.axis - (rank - len(s))
                if 0 <= a < len(s) and s[a] == size > 1:
                    fixed.append((n, a))
        hypotheses = []   # per-channel parameters are tried permuted first: a norm's weight must move with its units
        if params:
            hypotheses.append((params, []))
        hypotheses.append(({}, []))
        if fixed:
            hypotheses.append((params, fixed))
        for pp, ff in hypotheses:
            outcome = self._test(node, layouts, base, {**pp, **dict(ff)}, perms, size, ref.axis, rank)
            if outcome is None or (pp and any(o == ("inv",) for o in outcome)):
                continue
            for n in layouts:
                if n is not ref_node and not self.units.unify(ref, self.kind[n]):
                    return self._freeze(node, [self.kind[m] for m in layouts],
                                        "it combines channels laid out in incompatible blocks")
            for n, ax in pp.items():
                for key, pax in self.kind[n].prov[ax]:
                    self._bind(key, pax, "out", ref, node)
            if ff:
                if all(isinstance(self.kind[n], _Fixed) and self.kind[n].from_input for n, _ in ff):
                    self.units.fix(ref, "combined with the network input")
                else:
                    ev = self._event(node, "it combines the channels with a tensor fusion cannot move (a constant or "
                                           "a computed parameter)")
                    self.units.fix(ref, f"frozen at {self.where(node)}", ev)
            return self._outputs(self.values[node], outcome, ref)
        return self._freeze(node, [self.kind[n] for n in layouts],
                            "permuting its input channels does not permute its output")

    def _test(self, node, layouts, base, extra, perms, size, axis, rank):
        """Per output tensor: ("equi", k) if permuting the inputs' channels permutes output axis k the same way,
        ("inv",) if it leaves the output unchanged; None if neither holds."""
        out_b = self._run(node, base)
        if out_b is None:
            return None
        result = None
        for perm in perms:
            moved = dict(base)
            for n in layouts:
                moved[n] = base[n].index_select(self.kind[n].axis, perm)
            for n, ax in extra.items():
                moved[n] = base[n].index_select(ax, perm)
            out_m = self._run(node, moved)
            if out_m is None:
                return None
            lb, lm = pytree.tree_leaves(out_b), pytree.tree_leaves(out_m)
            if len(lb) != len(lm):
                return None
            found = []
            for b, m in zip(lb, lm):
                if not isinstance(b, torch.Tensor):
                    found.append(None)
                    continue
                cands = [k for k in range(b.ndim) if b.shape[k] == size]
                cands.sort(key=lambda k: (k != axis - (rank - b.ndim), k != axis, k))
                hit = next((("equi", k) for k in cands if _close(m, b.index_select(k, perm))), None)
                if hit is None and _close(m, b):
                    hit = ("inv",)
                if hit is None:
                    return None
                found.append(hit)
            if result is not None and found != result:
                return None
            result = found
        return result

    def _outputs(self, value, outcome, ref: Layout):
        kinds = iter([Layout(o[1], ref.segs) if o and o[0] == "equi" else _Fixed(False) if o else None
                      for o in outcome])
        if isinstance(value, torch.Tensor):
            return next(kinds)
        if isinstance(value, (list, tuple)):
            return tuple(next(kinds) if isinstance(v, torch.Tensor) else None for v in value)
        return None

    # ------------------------------------------------------------------------------------------ structural
    def _view(self, node: fx.Node):
        layout = self.kind.get(node.args[0])
        if not isinstance(layout, Layout):
            return NotImplemented
        moved = _reshape(layout, self._shape(node.args[0]), self._shape(node))
        if moved is None:
            return self._freeze(node, [layout], "a reshape splits its channels")
        return moved

    def _cat(self, node: fx.Node):
        a = _named(node)
        out = self.values[node]
        dim = a.get("dim", 0) % out.ndim
        tensors = [t for t in a["tensors"] if not (self.values[t].ndim == 1 and self.values[t].numel() == 0)]
        if any(isinstance(self.kind[t], Layout) and self.kind[t].axis != dim for t in tensors):
            return NotImplemented
        segs = []
        for t in tensors:
            k = self.kind[t]
            segs.extend(k.segs if isinstance(k, Layout) else
                        self.units.layout(dim, self.values[t].shape[dim], fixed="fixed data").segs)
        return Layout(dim, tuple(segs))

    def _slice(self, node: fx.Node):
        a = _named(node)
        x = a["input"]
        layout = self.kind.get(x)
        n = self._shape(x)
        dim = a.get("dim", 0) % len(n)
        if not isinstance(layout, Layout) or dim != layout.axis:
            return NotImplemented
        r = range(n[dim])[slice(a.get("start"), a.get("end"), a.get("step", 1))]
        if r.step != 1:
            return NotImplemented
        sub = self.units.slice(layout, r.start, max(r.start, r.stop))
        return sub if sub is not None else self._freeze(node, [layout], "a slice cuts through its units' blocks")

    def _pad(self, node: fx.Node):
        a = _named(node)
        layout = self.kind.get(a["input"])
        if not isinstance(layout, Layout):
            return NotImplemented
        pad, nd = list(a["pad"]), self.values[node].ndim
        i = 2 * (nd - 1 - layout.axis)
        before, after = (pad[i], pad[i + 1]) if i + 1 < len(pad) else (0, 0)
        if before == after == 0:
            return Layout(layout.axis, layout.segs)
        if a.get("mode", "constant") != "constant" or before < 0 or after < 0:
            return self._freeze(node, [layout], "it pads or crops the channels")
        segs = [*(self.units.layout(layout.axis, before).segs if before else ()), *layout.segs,
                *(self.units.layout(layout.axis, after).segs if after else ())]
        return Layout(layout.axis, tuple(segs))

    def _split(self, node: fx.Node):
        x = node.args[0]
        layout = self.kind.get(x)
        if not isinstance(layout, Layout):
            return NotImplemented
        dim = _named(node).get("dim", 0) % len(self._shape(x))
        outs = self.values[node]
        if dim != layout.axis:
            return tuple(Layout(layout.axis, layout.segs) for _ in outs)
        parts, off = [], 0
        for o in outs:
            sub = self.units.slice(layout, off, off + o.shape[dim])
            if sub is None:
                return self._freeze(node, [layout], "a split cuts through its units' blocks")
            parts.append(sub)
            off += o.shape[dim]
        return tuple(parts)

    def _group_norm(self, node: fx.Node):
        a = _named(node)
        layout = self.kind.get(a["input"])
        params = [p for p in (a.get("weight"), a.get("bias")) if p is not None]
        if not isinstance(layout, Layout) or layout.axis != 1 or \
                any(not (isinstance(self.kind[p], _Param) and self.kind[p].prov[0]) for p in params):
            return NotImplemented
        groups, size = int(a["num_groups"]), layout.length
        if groups > 1 and not self.units.cut_at(layout, [size // groups * i for i in range(1, groups)]):
            return self._freeze(node, [layout], "its GroupNorm groups cut through its units' blocks")
        for p in params:
            for key, ax in self.kind[p].prov[0]:
                self._bind(key, ax, "out", layout, node)
        return Layout(1, layout.segs)

    # -------------------------------------------------------------------------------------------- finishing
    def _terminal(self) -> set[fx.Node]:
        """Nodes whose every use leads to the output without another layer: units there never move."""
        terminal: set[fx.Node] = set()
        for node in reversed(list(self.tr.graph.nodes)):
            if node.op == "output":
                terminal.add(node)
            elif node.users and all(u in terminal and not self._weighted(u) for u in node.users):
                terminal.add(node)
        return terminal

    def _weighted(self, node: fx.Node) -> bool:
        if node in self.producer_nodes:
            return True
        return any(isinstance(self.kind.get(n), _Param) and sum(s > 1 for s in self._shape(n)) >= 2
                   for n in self._tensor_inputs(node)) if node.op == "call_function" else False

    def finish(self, strict: bool, owners: list[str]) -> AlignmentGraph:
        terminal = self._terminal()
        silent = {e for e, (node, _) in enumerate(self.events) if node in terminal}
        for f in self.units.fixes:
            if f.event in silent:
                f.event, f.reason = -1, "after the output layer"
        referenced = [s for _, lay in self.bindings.values() for s in lay.segs]
        referenced += [s for p in self.producers for lay in (p.out, p.ins) if lay is not None for s in lay.segs]
        referenced += [seg for _, _, seg in self.features]
        referenced += [s for lay in [*self.output_layouts, self.input_layout] if lay is not None for s in lay.segs]
        res = resolve(self.units, referenced)

        def segments(layout: Layout | None) -> tuple[Segment, ...]:
            if layout is None:
                return ()
            return tuple(Segment(*run) for s in layout.segs for run in res.segments(s))

        bindings = tuple(Binding(key, ax, role, segments(lay)) for (key, ax), (role, lay) in self.bindings.items())
        layers = tuple(Layer(p.name, p.kind, p.weight, p.bias, p.out_axis, p.in_axis, segments(p.out),
                             segments(p.ins), p.detail) for p in self.producers)
        producers: dict[int, list[str]] = {}
        for lay in layers:
            for seg in lay.out:
                if lay.name not in producers.setdefault(seg.group, []):
                    producers[seg.group].append(lay.name)
        features: dict[int, list[Feature]] = {}
        for hook, axis, seg in self.features:
            for a, b in res.pieces[seg.group]:
                if hook is not None and seg.start <= a and b <= seg.start + seg.n:
                    features.setdefault(res.klass[(seg.group, a)], []).append(
                        Feature(hook[0], hook[1], axis, a - seg.start, b - seg.start, hook[2]))
        groups = tuple(Group(size, bool(res.fixed[k]), tuple(producers.get(k, ())), tuple(features.get(k, ())),
                             res.fixed[k]) for k, size in enumerate(res.sizes))
        messages = []
        for e, (node, why) in enumerate(self.events):
            hit = [k for k in range(len(groups)) if e in res.events[k]]
            if e in silent or (hit and all(res.base[k] for k in hit)):
                continue
            left = f"{len(hit)} unit group(s) left in place" if hit else "they are left in place"
            messages.append(f"{self.where(node)}: {why}; {left}")
        if strict and messages:
            raise LandscapeError(f"strict fusion: {messages[0]} (strict=False averages them as in vanilla "
                                 "averaging)")
        in_group = segments(self.input_layout)[0].group if self.input_layout is not None else -1
        out_group = segments(self.output_layouts[0])[0].group if self.output_layouts and \
            self.output_layouts[0].segs else -1
        calls = tuple((path, self.tr.calls.get(path, 0)) for path in owners)
        return AlignmentGraph(layers, groups, bindings, in_group, out_group, tuple(messages), calls)


STRUCTURAL = {**dict.fromkeys(VIEWS, _Builder._view), aten.cat: _Builder._cat, aten.slice: _Builder._slice,
              aten.pad: _Builder._pad, aten.constant_pad_nd: _Builder._pad, aten.split: _Builder._split,
              aten.split_with_sizes: _Builder._split, aten.chunk: _Builder._split,
              aten.group_norm: _Builder._group_norm}


def _owners(model: nn.Module) -> list[str]:
    """Paths of the modules that hold parameters themselves (each registered under one name)."""
    seen: dict[int, list[str]] = {}
    for path, m in model.named_modules(remove_duplicate=False):
        if path and next(m.parameters(recurse=False), None) is not None:
            seen.setdefault(id(m), []).append(path)
    return sorted(paths[0] for paths in seen.values() if len(paths) == 1)


def build_graph(model: nn.Module, example: torch.Tensor, *, strict: bool = False, warn: bool = True
                ) -> AlignmentGraph:
    """The alignment graph of `model`, traced on `example` (a batch of at least one input, eval mode).

    Operations whose units cannot be followed freeze those units (they stay in place) with one
    `FrozenUnitsWarning` per operation (`warn=False`: only listed in `graph.frozen`); `strict=True` raises
    a one-line `LandscapeError` instead."""
    builder = _Builder(trace(model, example))
    builder.run()
    graph = builder.finish(strict, _owners(model))
    if warn:
        for message in graph.frozen:
            warnings.warn(f"fusion: {message}", FrozenUnitsWarning, stacklevel=2)
    return graph


__all__ = ["AlignmentGraph", "Binding", "Feature", "FrozenUnitsWarning", "Group", "Layer", "Segment", "build_graph"]
