"""The walk over the exported graph: every node in order, dispatched to what understands it.

Linear and convolution layers create a unit group (their output units) and consume the layout of
their input; operations that only move a layout are handled structurally (`fusion/structural.py`);
tensors computed from parameters alone keep their provenance (`fusion/provenance.py`); everything
else goes to the numeric equivariance test (`fusion/equivariance.py`).
"""

from __future__ import annotations

import operator
from dataclasses import replace

import torch
from torch import fx
from torch.utils import _pytree as pytree

from landscape.errors import LandscapeError

from .elementwise import chain
from .equivariance import generic
from .layout import Layout, Seg
from .provenance import param_op, parameter_units
from .record import Fixed, NodeState, Param, Producer, Record
from .structural import STRUCTURAL, VIEWS, named, reshape

aten = torch.ops.aten

PRODUCERS = {
    aten.linear,
    aten.conv1d,
    aten.conv2d,
    aten.conv3d,
    aten.convolution,
    aten._convolution,
    aten.conv_transpose1d,
    aten.conv_transpose2d,
    aten.conv_transpose3d,
}
# x @ W (+ b) with W a parameter stored (in, out): Hugging Face's Conv1D
MATMULS = {aten.addmm, aten.mm}
NORMS = {aten.batch_norm, aten.group_norm, aten.layer_norm, aten.instance_norm}


def _is_tensor_value(v) -> bool:
    """Return whether `v` is a tensor or holds one."""
    return any(isinstance(x, torch.Tensor) for x in pytree.tree_leaves(v))


class Walk(Record):
    """Walks the exported graph once, recording layouts, bindings, producers and constraints.

    Args:
        tr: the exported graph with every node's value on the example.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from fusion.export import trace
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> walk = Walk(trace(model, torch.randn(2, 3)))
        >>> walk.run()
        >>> [(p.name, p.ins.length, p.out.length) for p in walk.producers]
        [('0', 3, 4), ('2', 4, 2)]
        >>> [(key, axis, role) for (key, axis), (role, _) in walk.bindings.items() if key[0] == "0"]
        [('0.weight', 0, 'out'), ('0.weight', 1, 'in'), ('0.bias', 0, 'out')]
    """

    def run(self) -> None:
        """Give every node of the graph its state, in order, recording what the walk finds.

        Raises:
            LandscapeError: the graph holds a node that is neither an input, an operator call nor
                the output.
        """
        for node in self.tr.graph.nodes:
            if node.op == "placeholder":
                self.state[node] = self._placeholder(node)
            elif node.op == "output":
                self._output(node)
            elif node.op == "call_function":
                self.state[node] = self._call(node)
            else:
                raise LandscapeError(
                    f"unsupported construct in the model: {node.op} {node.target!r}"
                )

    def _placeholder(self, node: fx.Node) -> NodeState:
        v = self.values[node]
        if node in self.tr.state:
            return Param(tuple(((self.tr.state[node], a),) for a in range(v.ndim)))
        if node in self.tr.inputs and isinstance(v, torch.Tensor):
            if v.ndim >= 2 and v.is_floating_point() and self.input_layout is None:  # not token ids
                self.input_layout = self.units.layout(1, v.shape[1], fixed="input")
                return self.input_layout
            return Fixed(True)
        return Fixed(False)

    def _output(self, node: fx.Node) -> None:
        for leaf in pytree.tree_leaves(node.args[0]):
            if isinstance(leaf, fx.Node):
                for k in pytree.tree_leaves(
                    self.state.get(leaf), is_leaf=lambda x: isinstance(x, Layout)
                ):
                    if isinstance(k, Layout):
                        self.units.fix(k, "output")
                        self.output_layouts.append(k)

    def _call(self, node: fx.Node) -> NodeState:
        if node.target is operator.getitem:
            src = self.state.get(node.args[0])
            return src[node.args[1]] if isinstance(src, tuple) else Fixed(False)
        if not _is_tensor_value(self.values[node]):
            return None
        packet = getattr(node.target, "overloadpacket", None)
        if packet in PRODUCERS or (packet in MATMULS and self._weight_product(node)):
            return self._producer(node, packet)
        if (
            packet is aten.embedding
            and isinstance(self.state.get(node.args[0]), Param)
            and self.state[node.args[0]].prov[1]
        ):
            return self._embedding(node)
        leaves = self.tensor_inputs(node)
        kinds = [self.state.get(n) for n in leaves]
        layouts = [n for n in leaves if isinstance(self.state[n], Layout)]
        if not any(not self.units.known_fixed(self.state[n]) for n in layouts):
            if packet in VIEWS and layouts and layouts[0] is node.args[0]:
                moved = reshape(self.state[layouts[0]], self.shape(layouts[0]), self.shape(node))
                if moved is not None:
                    return moved
            if leaves and all(isinstance(k, Param) for k in kinds):
                return param_op(self, node, packet, leaves)
            parameter_units(self, node, leaves)
            from_input = any(
                isinstance(k, Layout) or (isinstance(k, Fixed) and k.from_input) for k in kinds
            )
            return self.fixed_like(self.values[node], from_input)
        handler = STRUCTURAL.get(packet)
        if handler is not None:
            result = handler(self, node)
            if result is not NotImplemented:
                return result
        return generic(self, node, leaves, layouts)

    # -------------------------------------------------------------------------------------------
    # producers
    def _weight_product(self, node: fx.Node) -> bool:
        """Return whether an addmm/mm multiplies data by a parameter matrix (plus a bias vector)."""
        a = named(node)
        x, w = (a["mat1"], a["mat2"]) if "mat1" in a else (a["input"], a["mat2"])
        bias = a["input"] if "mat1" in a else None
        return (
            isinstance(self.state.get(w), Param)
            and not isinstance(self.state.get(x), Param)
            and (
                bias is None
                or (
                    a.get("beta", 1) == 1 and a.get("alpha", 1) == 1 and self.values[bias].ndim == 1
                )
            )
        )

    def _embedding(self, node: fx.Node) -> NodeState:
        """Return the layout of a table read by index (token embeddings): the table's columns."""
        a = named(node)
        key = self.state[a["weight"]].prov[1]
        n_out = self.values[node].shape[-1]
        g = self.param_group.get(key)
        if g is None:
            g = self.param_group[key] = self.units.new(n_out)
        layout = Layout(self.values[node].ndim - 1, (Seg(g, 0, n_out),))
        for k, ax in key:
            self.bind(k, ax, "out", layout, node)
        weight, w_out = key[0]
        self.producers.append(
            Producer(
                weight.rsplit(".", 1)[0] if "." in weight else weight,
                "embedding",
                weight,
                None,
                w_out,
                -1,
                layout,
                None,
                (str(aten.embedding),),
            )
        )
        self.producer_nodes.add(node)
        self._feature(node, layout)
        return layout

    def _producer(self, node: fx.Node, packet) -> NodeState:
        a = named(node)
        x, w, b = a.get("input"), a.get("weight"), a.get("bias")
        if packet in MATMULS:
            x, w, b = (
                (a["mat1"], a["mat2"], a["input"])
                if packet is aten.addmm
                else (a["input"], a["mat2"], None)
            )
        linear = packet is aten.linear or packet in MATMULS
        transposed = bool(
            a.get(
                "transposed",
                packet in (aten.conv_transpose1d, aten.conv_transpose2d, aten.conv_transpose3d),
            )
        )
        groups = int(a.get("groups", 1))
        kind = "linear" if linear else "conv_transpose" if transposed else "conv"
        out_axis, in_axis = (1, 0) if transposed or packet in MATMULS else (0, 1)
        xk, wk = self.state.get(x), self.state.get(w)
        bk = self.state.get(b) if isinstance(b, fx.Node) else None
        xv, out = self.values[x], self.values[node]
        cax = xv.ndim - 1 if linear else 1
        oax = out.ndim - 1 if linear else 1
        n_out = out.shape[oax]
        detail = (
            str(packet),
            b is not None,
            *(
                f"{k}={v}"
                for k, v in a.items()
                if k not in ("input", "weight", "bias", "mat1", "mat2")
            ),
        )
        x_layout = xk if isinstance(xk, Layout) and not self.units.known_fixed(xk) else None
        if x_layout is not None and x_layout.outer_axes:
            self.freeze(node, [x_layout], "it reads channels split into heads")
            x_layout = None
        if (
            not isinstance(wk, Param)
            or not wk.prov[out_axis]
            or (groups == 1 and not wk.prov[in_axis])
            or (b is not None and not (isinstance(bk, Param) and bk.prov[0]))
            or (transposed and groups != 1)
        ):
            why = (
                "grouped transposed convolution"
                if transposed and groups != 1
                else "its weight or bias is computed in forward, not a parameter"
            )
            ev = self.event(node, why)
            layout = self.units.layout(oax, n_out)
            for lay in ([x_layout] if x_layout else []) + [layout]:
                self.units.fix(lay, f"frozen at {self.where(node)}", ev)
            return layout
        in_layout = xk if isinstance(xk, Layout) and xk.axis == cax and not xk.outer_axes else None
        passthrough = None
        if x_layout is not None and x_layout.axis != cax:
            if linear:  # a linear layer along another axis: the channels pass through it
                passthrough = x_layout
            else:
                self.freeze(node, [x_layout], "its input channels are not on the channel axis")
        if not linear and not transposed and groups > 1:
            c_in = xv.shape[1]
            if (
                groups == c_in and n_out % c_in == 0
            ):  # depthwise: each output channel follows its input channel
                if in_layout is None:
                    return Fixed(
                        isinstance(xk, Layout) or (isinstance(xk, Fixed) and xk.from_input)
                    )
                mult = n_out // c_in
                if any(s.outer != 1 for s in in_layout.segs):
                    return self.freeze(
                        node, [in_layout], "depthwise convolution over repeated channels"
                    )
                layout = Layout(1, tuple(replace(s, inner=s.inner * mult) for s in in_layout.segs))
                for key, ax in wk.prov[out_axis]:
                    self.bind(key, ax, "out", layout, node)
                if bk is not None:
                    for key, ax in bk.prov[0]:
                        self.bind(key, ax, "out", layout, node)
                return layout
            if in_layout is not None and not self.units.known_fixed(in_layout):
                self.freeze(
                    node, [in_layout], f"grouped convolution (groups={groups}) reads channel groups"
                )
            in_layout = None
        key = wk.prov[out_axis]
        g = self.param_group.get(key)
        if g is None:
            g = self.param_group[key] = self.units.new(n_out)
        layout = Layout(oax, (Seg(g, 0, n_out),))
        if groups > 1:  # output channels stay within their convolution group
            self.units.cut_at(layout, [n_out // groups * i for i in range(1, groups)])
        for k, ax in wk.prov[out_axis]:
            self.bind(k, ax, "out", layout, node)
        if in_layout is not None:
            for k, ax in wk.prov[in_axis]:
                self.bind(k, ax, "in", in_layout, node)
        if bk is not None:
            for k, ax in bk.prov[0]:
                self.bind(k, ax, "out", layout, node)
        weight, w_out = wk.prov[out_axis][0]
        w_in = (
            next((ax for k, ax in wk.prov[in_axis] if k == weight), None)
            if in_layout is not None
            else None
        )
        self.producers.append(
            Producer(
                weight.rsplit(".", 1)[0] if "." in weight else weight,
                kind,
                weight,
                bk.prov[0][0][0] if bk is not None else None,
                w_out,
                w_in if w_in is not None else -1,
                layout,
                in_layout if w_in is not None else None,
                detail,
            )
        )
        self.producer_nodes.add(node)
        self._feature(node, layout)
        if passthrough is not None:
            ev = self.event(node, "a linear layer applied along a non-channel axis")
            self.units.fix(layout, f"frozen at {self.where(node)}", ev)
            return passthrough
        return layout

    def _feature(self, node: fx.Node, layout: Layout) -> None:
        """Record where a producer's pre-activations are read.

        Its output, or the output of the norm that alone reads it.
        """
        spot, axis = node, layout.axis
        if len(node.users) == 1:
            user = next(iter(node.users))
            packet = getattr(user.target, "overloadpacket", None)
            if packet in NORMS and user.args[0] is node:
                spot = user
            elif (
                packet in VIEWS
                and node not in self.tr.module_output
                and layout.axis == self.values[node].ndim - 1
                and self.values[user].shape[-1] == self.values[node].shape[-1]
            ):  # (B*T, C) viewed as (B, T, C)
                spot, axis = user, self.values[user].ndim - 1
        spot = spot if spot in self.tr.module_output else node
        axis = axis if spot is not node else layout.axis
        hook = self.tr.module_output.get(spot)
        if hook is not None:
            hook = (*hook, self.values[spot].ndim, chain(spot, self.values))
        self.features.append((hook, axis, layout.segs[0]))
