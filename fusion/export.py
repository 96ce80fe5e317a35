"""Tracing: the model's ATen graph from `torch.export` (non-strict), run once on an example batch.

`torch.export` specialises the graph on the example: Python control flow takes the branch the
example takes, shape arithmetic (`x.shape[0]`, `x.size()[3]`) becomes constants, extra forward
arguments keep their defaults, and a module called twice is two calls. The graph is only analysed on
that example; it is never run on other inputs (a reshape specialised on the example's batch size
would be wrong there). Activations for the activation-based metric are read with forward hooks on
the user's own modules (`fusion/metrics.py`), so the graph records, for each node that is the output
of a module call, which module and which call it is.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import torch
from torch import fx, nn
from torch.export.graph_signature import InputKind
from torch.utils import _pytree as pytree

from landscape.errors import LandscapeError


@dataclass
class Trace:
    """An exported graph with every node's value on the example."""

    graph: fx.Graph
    values: dict[fx.Node, object]  # each node's value on the example (eval mode)
    state: dict[fx.Node, str]  # placeholders of parameters and persistent buffers -> state key
    inputs: list[fx.Node]  # placeholders of the model's inputs
    module_output: dict[
        fx.Node, tuple[str, int]
    ]  # node -> (module path, call index) it is the output of
    where: dict[fx.Node, tuple[str, str]]  # node -> innermost (module path, class name) it runs in
    calls: dict[str, int]  # module path -> number of calls on the example
    aliases: dict[str, tuple[str, ...]] = field(
        default_factory=dict
    )  # state key -> every key of that tensor


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def call_arguments(example: object) -> tuple[tuple, dict]:
    """The positional and keyword arguments a model is called with on `example`: a tensor is the one
    positional argument, a tuple or list the positional arguments, a dict the keyword arguments.
    """
    if isinstance(example, dict):
        return (), dict(example)
    if isinstance(example, (tuple, list)):
        return tuple(example), {}
    return (example,), {}


def _known_failure(exc: BaseException) -> str | None:
    """A one-line error saying what to pass instead, for export failures with a known cause."""
    found = re.search(r"<class '[\w.]*?(\w*Cache)'> in output", str(exc))
    if found:
        return (
            f"cannot trace the model with torch.export: it returns a key/value cache "
            f"({found.group(1)}); build "
            "it with use_cache=False, or pass use_cache=False in x (a dict of keyword arguments)"
        )
    return None


def _aliases(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """State keys that name one tensor (tied weights): each key -> all keys of its tensor, first key
    first.
    """
    names: dict[int, list[str]] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        names.setdefault(id(value), []).append(key)
    return {key: tuple(keys) for keys in names.values() if len(keys) > 1 for key in keys}


def trace(model: nn.Module, example: object) -> Trace:
    """Export `model` (in eval mode) on `example` (see `call_arguments`) and record every node's
    value.

    Args:
        model: the user's module.
        example: a tensor, a tuple of positional arguments or a dict of keyword arguments.

    Returns:
        The exported graph with each node's value, module calls and tied state keys.

    Raises:
        LandscapeError: the model cannot be exported or does not run on the example.
    """
    args, kwargs = call_arguments(example)
    was = model.training
    model.eval()
    try:
        with (
            warnings.catch_warnings()
        ):  # the user's own warnings (e.g. an implicit softmax dim) belong to their runs
            warnings.simplefilter("ignore")
            try:
                ep = torch.export.export(model, args, kwargs)
            # Any error of a user's module becomes one line.
            except Exception as exc:  # noqa: BLE001
                raise LandscapeError(
                    _known_failure(exc)
                    or f"cannot trace the model with torch.export "
                    f"({type(exc).__name__}: {_first_line(exc)})"
                ) from None
            user = iter(pytree.tree_leaves((args, kwargs)))
            flat, inputs = [], []
            placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
            state: dict[fx.Node, str] = {}
            persistent = set(ep.state_dict)
            aliases = _aliases(model)
            for node, spec in zip(placeholders, ep.graph_signature.input_specs):
                if spec.kind == InputKind.USER_INPUT:
                    flat.append(next(user))
                    inputs.append(node)
                elif (
                    spec.kind in (InputKind.PARAMETER, InputKind.BUFFER)
                    and spec.target in persistent
                ):
                    flat.append(ep.state_dict[spec.target])
                    state[node] = aliases.get(spec.target, (spec.target,))[0]
                elif spec.target in ep.constants:
                    flat.append(ep.constants[spec.target])
                else:
                    raise LandscapeError(
                        f"unsupported model input {spec.kind.name.lower()} {spec.target!r}"
                    )
            interpreter = fx.Interpreter(ep.graph_module, garbage_collect_values=False)
            try:
                with torch.no_grad():
                    interpreter.run(*flat)
            except Exception as exc:  # noqa: BLE001
                raise LandscapeError(
                    f"the model does not run on the example input: {_first_line(exc)}"
                ) from None
    finally:
        model.train(was)
    values = dict(interpreter.env)
    module_output, where, calls = _module_calls(ep.graph)
    return Trace(ep.graph, values, state, inputs, module_output, where, calls, aliases)


def _module_calls(
    graph: fx.Graph,
) -> tuple[dict[fx.Node, tuple[str, int]], dict[fx.Node, tuple[str, str]], dict[str, int]]:
    """Which nodes are the (single tensor) output of a module call, from export's `nn_module_stack`;
    the innermost module of every node; how many times each module is called.
    """
    members: dict[str, set[fx.Node]] = {}
    info: dict[str, tuple[str, int, int]] = {}  # stack key -> (path, call index, depth)
    where: dict[fx.Node, tuple[str, str]] = {}
    for node in graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        for depth, (key, (path, _)) in enumerate(stack.items()):
            members.setdefault(key, set()).add(node)
            call = key.rsplit("@", 1)[1] if "@" in key else "0"
            info[key] = (path, int(call) if call.isdigit() else 0, depth)
        if stack:
            path, cls = list(stack.values())[-1]
            where[node] = (path, str(getattr(cls, "__name__", cls)).rsplit(".", 1)[-1])
    best: dict[fx.Node, tuple[int, str, int]] = {}
    for key, nodes in members.items():
        path, call, depth = info[key]
        if not path:
            continue
        outs = [n for n in nodes if any(u not in nodes for u in n.users)]
        if len(outs) == 1 and (outs[0] not in best or best[outs[0]][0] < depth):
            best[outs[0]] = (depth, path, call)
    calls: dict[str, int] = {}
    for path, _, _ in info.values():
        calls[path] = calls.get(path, 0) + 1
    return {n: (path, call) for n, (_, path, call) in best.items()}, where, calls
