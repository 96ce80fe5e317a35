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
    """An exported graph with every node's value on the example.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> tr = trace(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), torch.randn(2, 3))
        >>> sorted(tr.state.values()), tr.calls
        (['0.bias', '0.weight'], {'': 1, '0': 1, '1': 1})
        >>> sorted(tr.module_output.values())
        [('0', 0), ('1', 0)]
    """

    graph: fx.Graph
    values: dict[fx.Node, object]  # each node's value on the example (eval mode)
    state: dict[fx.Node, str]  # placeholders of parameters and persistent buffers -> state key
    inputs: list[fx.Node]  # placeholders of the model's inputs
    module_output: dict[fx.Node, tuple[str, int]]  # node -> (module path, call index) it outputs
    where: dict[fx.Node, tuple[str, str]]  # node -> innermost (module path, class name) it runs in
    calls: dict[str, int]  # module path -> number of calls on the example
    # state key -> every key of that tensor (tied weights)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def call_arguments(example: object) -> tuple[tuple, dict]:
    """The positional and keyword arguments a model is called with on `example`.

    Args:
        example: a tensor (the one positional argument), a tuple or list (the positional
            arguments) or a dict (the keyword arguments).

    Returns:
        The positional arguments and the keyword arguments.

    Examples:
        >>> call_arguments({"input_ids": 1}), call_arguments([1, 2]), call_arguments(3)
        (((), {'input_ids': 1}), ((1, 2), {}), ((3,), {}))
    """
    if isinstance(example, dict):
        return (), dict(example)
    if isinstance(example, (tuple, list)):
        return tuple(example), {}
    return (example,), {}


def _known_failure(exc: BaseException) -> str | None:
    """Return a one-line error saying what to pass instead, for export failures of known cause."""
    found = re.search(r"<class '[\w.]*?(\w*Cache)'> in output", str(exc))
    if found:
        return (
            f"cannot trace the model with torch.export: it returns a key/value cache "
            f"({found.group(1)}); build "
            "it with use_cache=False, or pass use_cache=False in x (a dict of keyword arguments)"
        )
    return None


def _aliases(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Return each key of a tensor with several keys (tied weights) -> all its keys, in order."""
    names: dict[int, list[str]] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        names.setdefault(id(value), []).append(key)
    return {key: tuple(keys) for keys in names.values() if len(keys) > 1 for key in keys}


def trace(model: nn.Module, example: object) -> Trace:
    """Export `model` (in eval mode) on `example` and record every node's value.

    The model is exported with `torch.export` (non-strict), then its graph is run once on the
    example; the model's training mode is restored afterwards.

    Args:
        model: the user's module.
        example: a tensor, a tuple of positional arguments or a dict of keyword arguments (see
            `call_arguments`).

    Returns:
        The exported graph with each node's value, module calls and tied state keys.

    Raises:
        LandscapeError: the model cannot be exported, does not run on the example, or takes an
            input export cannot give it.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> tr = trace(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), torch.randn(2, 3))
        >>> [(n.name, tuple(tr.values[n].shape)) for n in tr.graph.nodes if n.op == "call_function"]
        [('linear', (2, 4)), ('relu', (2, 4))]
        >>> trace(nn.Linear(3, 4), torch.randn(2, 5))
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: cannot trace the model with torch.export (...)
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
    """Return module calls from export's `nn_module_stack`: outputs, innermost modules, counts.

    That is: which nodes are the (single tensor) output of a module call, the innermost module of
    every node, and how many times each module is called.
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
