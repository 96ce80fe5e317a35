"""What the walk over the exported graph records: each node's state, and the bindings and
constraints found so far.

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
    """A tensor that carries no movable units."""

    from_input: bool = False  # computed from the network input only (before the first layer)


@dataclass(frozen=True)
class Param:
    """A parameter or buffer, or a tensor computed from them alone: per axis, the (state key, axis)
    it follows.
    """

    prov: tuple[tuple[tuple[str, int], ...], ...]


NodeState = Layout | Param | Fixed | tuple | None


@dataclass(frozen=True)
class Producer:
    """A call of a linear or convolution layer as the walk found it (layouts still provisional)."""

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
    """The walk's state: node states, parameter bindings, producers, unit constraints and freeze
    events.
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
        self.heads: list[
            tuple[tuple[Seg, ...], ...]
        ] = []  # per attention call: each head's Q/K then V segments
        self.input_layout: Layout | None = None
        self.output_layouts: list[Layout] = []
        self.gen = torch.Generator().manual_seed(0)

    def shape(self, node: fx.Node) -> tuple[int, ...]:
        """The shape of the node's value on the example."""
        return tuple(self.values[node].shape)

    def tensor_inputs(self, node: fx.Node) -> list[fx.Node]:
        """The node's tensor arguments, each once, in order."""
        seen: dict[fx.Node, None] = {}
        for a in pytree.tree_leaves((node.args, node.kwargs)):
            if isinstance(a, fx.Node) and isinstance(self.values.get(a), torch.Tensor):
                seen[a] = None
        return list(seen)

    @staticmethod
    def fixed_like(value, from_input: bool = False) -> NodeState:
        """`Fixed` states shaped like `value` (a tensor, or a list or tuple of them)."""
        if isinstance(value, torch.Tensor):
            return Fixed(from_input)
        if isinstance(value, (list, tuple)):
            return tuple(Fixed(from_input) if isinstance(v, torch.Tensor) else None for v in value)
        return None

    def where(self, node: fx.Node) -> str:
        """The operation, node name and innermost module of `node`, for messages."""
        target = node.target
        op = str(getattr(target, "overloadpacket", None) or getattr(target, "__name__", target))
        path, cls = self.tr.where.get(node, ("", ""))
        loc = f"in module '{path}' ({cls})" if path else "in the model's forward"
        return f"{op} (node '{node.name}') {loc}"

    def event(self, node: fx.Node, why: str) -> int:
        """Record a freeze event at `node`; returns its index."""
        self.events.append((node, why))
        return len(self.events) - 1

    def freeze(self, node: fx.Node, layouts: list[Layout], why: str) -> NodeState:
        """Fix the units of `layouts` because of `node`; the node's output carries no units."""
        ev = self.event(node, why)
        for layout in layouts:
            self.units.fix(layout, f"frozen at {self.where(node)}", ev)
        return self.fixed_like(self.values[node])

    def bind(self, key: str, axis: int, role: str, layout: Layout, node: fx.Node) -> None:
        """Bind axis `axis` of state entry `key` to the units of `layout` ("out" or "in"). A table
        used both ways on the same units (an embedding tied to the output layer) is bound once,
        "out": it moves once.
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
