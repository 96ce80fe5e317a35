"""What the walk over the exported graph records: node states, bindings and constraints.

Every node of the graph is in one of these states (`NodeState`):
- a `Layout` (`fusion/layout.py`): a tensor whose channel axis carries units that may move;
- `Param`: a parameter or buffer, or a tensor computed from them alone, with the (state key, axis)
  each of its axes follows (its provenance);
- `Fixed`: a tensor that carries no movable units;
- a tuple of states for operations that return several tensors, or None for values that are not
  tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx
from torch.utils import _pytree as pytree

from .export import Trace
from .layout import Layout, Seg, Units


@dataclass(frozen=True)
class Fixed:
    """A tensor that carries no movable units.

    Examples:
        >>> Fixed(), Fixed(from_input=True).from_input
        (Fixed(from_input=False), True)
    """

    from_input: bool = False  # computed from the network input only (before the first layer)


@dataclass(frozen=True)
class Param:
    """A parameter or buffer, or a tensor computed from them alone, with its provenance.

    `prov` holds, per axis of the tensor, the (state key, axis) pairs that axis follows.

    Examples:
        The transpose of a linear layer's (4, 3) weight:

        >>> Param(((("fc.weight", 1),), (("fc.weight", 0),))).prov[1]
        (('fc.weight', 0),)
    """

    prov: tuple[tuple[tuple[str, int], ...], ...]


NodeState = Layout | Param | Fixed | tuple | None


@dataclass(frozen=True)
class Producer:
    """A call of a linear or convolution layer as the walk found it (layouts still provisional).

    The fields are those of `fusion.graph.Layer`, with layouts of provisional groups for `out` and
    `ins` (None: the input units are fixed or not followed).

    Examples:
        >>> from fusion.layout import Units
        >>> units = Units()
        >>> inputs, outputs = units.layout(1, 3, fixed="input"), units.layout(1, 4)
        >>> fc = Producer("fc", "linear", "fc.weight", "fc.bias", 0, 1, outputs, inputs, ())
        >>> fc.out.length, fc.ins.length
        (4, 3)
    """

    name: str
    kind: str
    weight: str
    bias: str | None
    out_axis: int
    in_axis: int
    out: Layout
    ins: Layout | None
    detail: tuple


class Record:
    """The walk's state: node states, parameter bindings, producers, unit constraints, freezes.

    Args:
        tr: the exported graph with every node's value on the example.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from fusion.export import trace
        >>> rec = Record(trace(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), torch.randn(2, 3)))
        >>> node = next(n for n in rec.tr.graph.nodes if n.name == "relu")
        >>> rec.shape(node), rec.where(node)
        ((2, 4), "aten.relu (node 'relu') in module '1' (ReLU)")
    """

    def __init__(self, tr: Trace) -> None:
        self.tr = tr
        self.values = tr.values
        self.units = Units()
        self.state: dict[fx.Node, NodeState] = {}
        self.bindings: dict[tuple[str, int], tuple[str, Layout]] = {}
        self.producers: list[Producer] = []
        self.producer_nodes: set[fx.Node] = set()
        self.features: list[tuple[tuple[str, int, int, tuple] | None, int, object]] = []
        self.param_group: dict[tuple, int] = {}
        self.events: list[tuple[fx.Node, str]] = []
        # per attention call: each head's Q/K then V segments
        self.heads: list[tuple[tuple[Seg, ...], ...]] = []
        self.input_layout: Layout | None = None
        self.output_layouts: list[Layout] = []
        self.gen = torch.Generator().manual_seed(0)

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        """The shape of the node's value on the example.

        Args:
            node: a node whose value is a tensor.

        Returns:
            Its shape.
        """
        return tuple(self.values[node].shape)

    def tensor_inputs(self, node: fx.Node) -> list[fx.Node]:
        """The node's tensor arguments, each once, in order.

        Args:
            node: a node of the graph.

        Returns:
            The argument nodes (positional and keyword, nested included) whose values are tensors.
        """
        seen: dict[fx.Node, None] = {}
        for a in pytree.tree_leaves((node.args, node.kwargs)):
            if isinstance(a, fx.Node) and isinstance(self.values.get(a), torch.Tensor):
                seen[a] = None
        return list(seen)

    @staticmethod
    def fixed_like(value, from_input: bool = False) -> NodeState:
        """`Fixed` states shaped like `value` (a tensor, or a list or tuple of them).

        Args:
            value: a node's value.
            from_input: whether it is computed from the network input only.

        Returns:
            A `Fixed` for a tensor, a tuple of them (None where an item is not a tensor) for a list
            or tuple, else None.
        """
        if isinstance(value, torch.Tensor):
            return Fixed(from_input)
        if isinstance(value, (list, tuple)):
            return tuple(Fixed(from_input) if isinstance(v, torch.Tensor) else None for v in value)
        return None

    def where(self, node: fx.Node) -> str:
        """The operation, node name and innermost module of `node`, for messages.

        Args:
            node: a node of the graph.

        Returns:
            E.g. "aten.flip (node 'flip') in module 'block' (Block)", or "... in the model's
            forward" for a node outside any submodule.
        """
        target = node.target
        op = str(getattr(target, "overloadpacket", None) or getattr(target, "__name__", target))
        path, cls = self.tr.where.get(node, ("", ""))
        loc = f"in module '{path}' ({cls})" if path else "in the model's forward"
        return f"{op} (node '{node.name}') {loc}"

    def event(self, node: fx.Node, why: str) -> int:
        """Record a freeze event at `node`.

        Args:
            node: the operation that cannot be followed.
            why: what about it, as the warning says it.

        Returns:
            The event's index.
        """
        self.events.append((node, why))
        return len(self.events) - 1

    def freeze(self, node: fx.Node, layouts: list[Layout], why: str) -> NodeState:
        """Fix the units of `layouts` because of `node`; the node's output carries no units.

        Args:
            node: the operation that cannot be followed.
            layouts: the layouts of its inputs whose units must stay in place.
            why: what about it, as the warning says it.

        Returns:
            `Fixed` states shaped like the node's value.
        """
        ev = self.event(node, why)
        for layout in layouts:
            self.units.fix(layout, f"frozen at {self.where(node)}", ev)
        return self.fixed_like(self.values[node])

    def bind(self, key: str, axis: int, role: str, layout: Layout, node: fx.Node) -> None:
        """Bind axis `axis` of state entry `key` to the units of `layout`.

        A table used both ways on the same units (an embedding tied to the output layer) is bound
        once, "out": it moves once. A second binding the units cannot share freezes both layouts'
        units, with an event at `node`.

        Args:
            key: the state_dict key of a parameter or buffer.
            axis: its axis that the units index.
            role: "out" (one value per unit) or "in" (the units are consumed).
            layout: the units along that axis (its own axis is replaced by `axis`).
            node: the operation that uses the parameter, for messages.
        """
        layout = layout.on(axis)
        prev = self.bindings.get((key, axis))
        if prev is None:
            self.bindings[(key, axis)] = (role, layout)
        elif prev[0] != role and self.units.unify(prev[1], layout):
            self.bindings[(key, axis)] = ("out", prev[1])
        elif prev[0] != role or not self.units.unify(prev[1], layout):
            ev = self.event(node, f"parameter '{key}' is used by units in two incompatible ways")
            for lay in (prev[1], layout):
                self.units.fix(lay, f"frozen at {self.where(node)}", ev)
