"""The alignment graph: which layers' output units move together, derived from the model by torch.fx tracing.

Every Linear/Conv output starts a group of units (neurons or channels). BatchNorm, activations, pooling,
dropout and identity pass the group through unchanged; a residual addition merges the groups of everything
added together (one transport map per residual stream); a flatten from (C, H, W) turns channel c into the
block of H*W consecutive inputs of the next Linear. The network input and output (logits) are never moved.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from landscape.errors import LandscapeError

PRODUCERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# modules and functions that act on each unit (channel) separately, so they commute with any transport of units
PASS_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
                nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
PASS_FUNCTIONS = {torch.relu, F.relu, torch.sigmoid, torch.tanh, F.gelu, F.silu, F.leaky_relu, F.elu, F.dropout,
                  F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
                  F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
                  F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d}
PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous", "clone"}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
SCALE_FUNCTIONS = {operator.mul, operator.truediv, torch.mul}   # a tensor times or over a plain number
RESHAPES = {torch.flatten}
RESHAPE_METHODS = {"flatten", "view", "reshape"}
SHAPE_METHODS = {"size", "dim"}


@dataclass(frozen=True)
class Layer:
    """A module with per-unit parameters: a producer (linear/conv) or a norm (BatchNorm)."""

    name: str            # qualified module name (state_dict prefix)
    kind: str            # "linear", "conv" or "norm"
    group: int           # group of its output units
    in_group: int = -1   # producers: group of its input units
    in_block: int = 1    # producers: consecutive inputs per input unit (H*W after a flatten)
    detail: tuple = ()   # module type and the hyper-parameters two models must share


@dataclass(frozen=True)
class Group:
    """Units that share one transport map."""

    size: int
    fixed: bool                   # network input or output: never transported
    producers: tuple[str, ...]    # layers whose output units these are, in forward order
    features: tuple[str, ...]     # modules whose outputs are the group's pre-activations (one per producer)


@dataclass(frozen=True)
class AlignmentGraph:
    """Layers in forward order and the groups of units they produce and consume."""

    layers: tuple[Layer, ...]
    groups: tuple[Group, ...]
    input_group: int
    output_group: int

    def layer(self, name: str) -> Layer:
        """The layer called `name`."""
        return next(lay for lay in self.layers if lay.name == name)

    def signature(self) -> tuple:
        """Everything two models must share to be aligned: layers, wiring, and the sizes of fixed groups."""
        return (tuple((lay.name, lay.kind, lay.group, lay.in_group, lay.in_block, lay.detail) for lay in self.layers),
                tuple((g.fixed, g.size if g.fixed else None) for g in self.groups))


class _Groups:
    """Union-find over unit groups, each with a size and a fixed flag."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.fixed: list[bool] = []

    def new(self, size: int, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.fixed.append(fixed)
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int, where: str) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if self.size[a] != self.size[b]:
            raise LandscapeError(f"{where}: adds tensors with {self.size[a]} and {self.size[b]} channels")
        self.parent[b] = a
        self.fixed[a] = self.fixed[a] or self.fixed[b]


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    return node.meta.get("landscape_shape")


class _ShapeRecorder(fx.Interpreter):
    """Runs the traced model once and stores each tensor-valued node's output shape in its meta."""

    def run_node(self, n: fx.Node):
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["landscape_shape"] = tuple(result.shape)
        return result


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"layer '{node.target}' ({type(modules[node.target]).__name__})"
    if node.op == "call_function":
        return f"function {getattr(node.target, '__name__', str(node.target))!r}"
    if node.op == "call_method":
        return f"method '.{node.target}()'"
    return f"{node.op} {node.target!r}"


def trace(model: nn.Module, example: torch.Tensor) -> fx.GraphModule:
    """Trace `model` with torch.fx and record every node's output shape on `example` (eval mode)."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 -- any error of a user's module becomes one line
        raise LandscapeError(f"cannot trace the model with torch.fx ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            _ShapeRecorder(gm).run(example)
    except Exception as exc:  # noqa: BLE001 -- any error of a user's module becomes one line
        raise LandscapeError(f"the model does not run on inputs of shape {tuple(example.shape[1:])}: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    finally:
        model.train(was)
    return gm


def build_graph(model: nn.Module, example: torch.Tensor) -> AlignmentGraph:
    """The alignment graph of `model`, traced on `example` (a batch of at least one input)."""
    gm = trace(model, example)
    modules = dict(gm.named_modules())
    groups = _Groups()
    feat: dict[fx.Node, tuple[int, int]] = {}     # tensor node -> (group of dim 1, block of inputs per unit)
    raw: list[tuple[str, str, int, int, int, tuple]] = []
    ends = {}                                     # "input" / "output" -> group
    feature_of: dict[str, str] = {}               # producer -> module whose output is its pre-activation
    called: set[str] = set()

    def source(node: fx.Node, arg) -> tuple[int, int]:
        if not isinstance(arg, fx.Node) or arg not in feat:
            raise LandscapeError(f"unsupported use of {_describe(node, modules)}: its input is not a tensor "
                                 "that fusion can follow")
        return feat[arg]

    def tensor_args(node: fx.Node) -> list[fx.Node]:
        return [a for a in list(node.args) + list(node.kwargs.values()) if isinstance(a, fx.Node) and a in feat]

    for node in gm.graph.nodes:
        shape = _shape(node)
        where = _describe(node, modules)
        if node.op == "placeholder":
            if shape is None or len(shape) < 2:
                raise LandscapeError("the model's input must be a batch of tensors (N, C, ...)")
            if "input" in ends:
                raise LandscapeError("unsupported: the model takes more than one input")
            ends["input"] = groups.new(shape[1], fixed=True)
            feat[node] = (ends["input"], 1)
            continue
        if node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node) or out not in feat:
                raise LandscapeError("the model must return one tensor of logits")
            ends["output"], _ = feat[out]
            groups.fixed[groups.find(ends["output"])] = True
            continue
        if node.op == "get_attr":
            raise LandscapeError(f"unsupported: parameter or buffer {node.target!r} used outside a module")
        if shape is None:   # a non-tensor value computed from a tensor, e.g. x.size(0)
            if (node.op == "call_method" and node.target in SHAPE_METHODS) or \
                    (node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "ndim")):
                continue
            raise LandscapeError(f"unsupported operation in the model: {where}")
        if node.op == "call_module":
            if node.target in called:
                raise LandscapeError(f"unsupported: {where} is called more than once (shared layers)")
            called.add(node.target)
            mod = modules[node.target]
            g_in, block = source(node, node.args[0] if node.args else None)
            if isinstance(mod, PRODUCERS):
                if isinstance(mod, nn.Linear):
                    if len(_shape(node.args[0])) != 2:
                        raise LandscapeError(f"unsupported: {where} applied to a tensor with "
                                             f"{len(_shape(node.args[0]))} dimensions (flatten first)")
                    kind, out = "linear", mod.out_features
                else:
                    if mod.groups != 1:
                        raise LandscapeError(f"unsupported: {where} has groups={mod.groups}")
                    kind, out = "conv", mod.out_channels
                g = groups.new(out)
                raw.append((node.target, kind, g, g_in, block, _detail(mod)))
                feat[node] = (g, 1)
                feature_of[node.target] = _feature_module(node, modules)
            elif isinstance(mod, NORMS):
                if block != 1:
                    raise LandscapeError(f"unsupported: {where} after a flatten of spatial positions")
                raw.append((node.target, "norm", g_in, -1, 1, _detail(mod)))
                feat[node] = (g_in, 1)
            elif isinstance(mod, nn.Flatten):
                feat[node] = _reshaped(node, (g_in, block), where)
            elif isinstance(mod, PASS_MODULES):
                feat[node] = (g_in, block)
            else:
                raise LandscapeError(f"unsupported operation in the model: {where}; fusion supports Linear, Conv, "
                                     "BatchNorm, element-wise activations, pooling, dropout, flatten and residual add")
            continue
        inputs = tensor_args(node)
        fn = node.target
        if (node.op == "call_function" and fn in ADD_FUNCTIONS) or (node.op == "call_method" and fn == "add"):
            first = source(node, inputs[0] if inputs else None)
            for other in inputs[1:]:
                g_other, block_other = feat[other]
                if block_other != first[1]:
                    raise LandscapeError(f"unsupported: {where} adds tensors with different layouts")
                groups.union(first[0], g_other, where)
            feat[node] = first
        elif node.op == "call_function" and fn in SCALE_FUNCTIONS and len(inputs) == 1:
            feat[node] = source(node, inputs[0])
        elif (node.op == "call_function" and fn in PASS_FUNCTIONS) or \
                (node.op == "call_method" and fn in PASS_METHODS):
            feat[node] = source(node, node.args[0])
        elif (node.op == "call_function" and fn in RESHAPES) or (node.op == "call_method" and fn in RESHAPE_METHODS):
            feat[node] = _reshaped(node, source(node, node.args[0]), where)
        else:
            raise LandscapeError(f"unsupported operation in the model: {where}")
    return _finish(raw, groups, feature_of, ends)


def _feature_module(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """The producer, or the BatchNorm that directly follows it: where its pre-activations are read."""
    while len(node.users) == 1:
        user = next(iter(node.users))
        if user.op == "call_module" and isinstance(modules[user.target], (*NORMS, nn.Identity)):
            node = user
        else:
            break
    return node.target


def _reshaped(node: fx.Node, source: tuple[int, int], where: str) -> tuple[int, int]:
    """A reshape that keeps the shape, or flattens (N, C, *S) into (N, C * prod(S))."""
    before, after = _shape(node.args[0]), _shape(node)
    if after == before:
        return source
    if len(after) == 2 and after[0] == before[0] and len(before) > 2:
        return source[0], source[1] * math.prod(before[2:])
    raise LandscapeError(f"unsupported reshape in the model: {where} turns {before} into {after}")


def _detail(mod: nn.Module) -> tuple:
    keys = ("kernel_size", "stride", "padding", "dilation", "padding_mode", "affine", "track_running_stats")
    return (type(mod).__name__, getattr(mod, "bias", None) is not None,
            *(str(getattr(mod, k)) for k in keys if hasattr(mod, k)))


def _finish(raw: list, groups: _Groups, feature_of: dict[str, str], ends: dict) -> AlignmentGraph:
    """Renumber groups 0.. in order of first appearance and collect their members."""
    order: dict[int, int] = {}

    def canon(g: int) -> int:
        root = groups.find(g)
        return order.setdefault(root, len(order))

    canon(ends["input"])
    layers = []
    for name, kind, g, g_in, block, detail in raw:
        g_in = canon(g_in) if g_in >= 0 else -1
        layers.append(Layer(name, kind, canon(g), g_in, block, detail))
    layers = tuple(layers)
    members: dict[int, list[str]] = {}
    for lay in layers:
        if lay.kind != "norm":
            members.setdefault(lay.group, []).append(lay.name)
    roots = sorted(order, key=order.get)
    out = tuple(Group(groups.size[r], groups.fixed[r], tuple(members.get(order[r], [])),
                      tuple(feature_of[p] for p in members.get(order[r], []))) for r in roots)
    return AlignmentGraph(layers, out, canon(ends["input"]), canon(ends["output"]))
