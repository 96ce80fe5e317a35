"""The elementwise functions applied to a layer's output, which turn pre- into post-activations.

Activation-based alignment reads each unit's activations at the output of its producer (or of the
norm that alone reads it): its pre-activations. The OT-fusion reference code can read them after the
nonlinearity instead (Singh & Jaggi, "Model Fusion via Optimal Transport", NeurIPS 2020). Since a
nonlinearity is elementwise, the post-activations are that function applied to the pre-activations
read by the hook, so no hook on the nonlinearity is needed (it may be a `torch.relu` call rather
than a module).

Which operations count is decided numerically, not from a list of names: an operation whose only
tensor argument is the node's value (first), whose output has its input's shape, and which on small
random data (at most 3 along every axis: a view to the example's shape fails) (1) commutes with a
random permutation of all elements and (2) changes only the element whose input changed, applies
the same scalar function to every element. The chain of such operations that alone read the node,
one after another (ReLU, GELU, a clamp, a dropout in eval mode, a scale by a constant), is recorded
as `Steps`; it ends at the first operation that reads another tensor (a residual add, PReLU's
slope) or mixes elements (pooling, a norm, the next layer), or where a value has several readers.
"""

from __future__ import annotations

import torch
from torch import fx
from torch.utils import _pytree as pytree

Step = tuple[object, tuple, tuple]  # (ATen operation, arguments after the input, keyword items)
Steps = tuple[Step, ...]


def _step(node: fx.Node, source: fx.Node) -> Step | None:
    """Return `node` as a step on `source`'s value (first argument, no other tensor), or None."""
    if node.op != "call_function" or not node.args or node.args[0] is not source:
        return None
    if any(isinstance(a, fx.Node) for a in pytree.tree_leaves((node.args[1:], node.kwargs))):
        return None
    return node.target, tuple(node.args[1:]), tuple(node.kwargs.items())


def apply(steps: Steps, value: torch.Tensor) -> torch.Tensor:
    """`value` passed through `steps` in order (each an elementwise function recorded by `chain`).

    Args:
        steps: the operations, each with the arguments that follow its input.
        value: the tensor they are applied to (an in-place step changes it).

    Returns:
        The result of the last step (`value` itself when there are none).

    Examples:
        >>> import torch
        >>> apply(((torch.ops.aten.relu.default, (), ()),), torch.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """
    for target, args, kwargs in steps:
        value = target(value, *args, **dict(kwargs))
    return value


def _elementwise(step: Step, example: torch.Tensor, gen: torch.Generator) -> bool:
    """Return whether `step` applies one scalar function to every element of a tensor like it."""
    # at most 3 along every axis: cheap, and an operation specialised on the example's shape (a
    # view to it) fails, as it would on the batches activations are read on
    x = torch.randn([min(n, 3) for n in example.shape], generator=gen).to(example.dtype)
    try:
        y = apply((step,), x.clone())
    except (RuntimeError, TypeError, ValueError):
        return False
    if not isinstance(y, torch.Tensor) or y.shape != x.shape or y.dtype != x.dtype:
        return False
    perm = torch.randperm(x.numel(), generator=gen)
    moved = apply((step,), x.flatten()[perm].reshape(x.shape))
    if not torch.allclose(moved.flatten(), y.flatten()[perm], rtol=1e-6, atol=1e-7):
        return False
    k = int(torch.randint(x.numel(), (1,), generator=gen))
    poked = x.clone()
    poked.view(-1)[k] += 1
    changed = (apply((step,), poked) != y).flatten()
    changed[k] = False
    return not bool(changed.any())


def chain(node: fx.Node, values: dict[fx.Node, object]) -> Steps:
    """The elementwise operations that alone read `node`'s value, one after another (module doc).

    Args:
        node: the node whose value the activations are read at.
        values: each node's value on the traced example.

    Returns:
        The steps that turn `node`'s value into the value after them; empty when `node` is not
        followed by an elementwise function.

    Examples:
        A ReLU follows `x`; a softmax, which mixes elements, does not count:

        >>> import torch
        >>> from torch import fx
        >>> aten = torch.ops.aten
        >>> graph = fx.Graph()
        >>> x = graph.placeholder("x")
        >>> relu = graph.call_function(aten.relu.default, (x,))
        >>> soft = graph.call_function(aten._softmax.default, (relu, 0, False))
        >>> _ = graph.output(soft)
        >>> values = {x: torch.randn(4), relu: torch.randn(4).relu()}
        >>> [str(target) for target, _, _ in chain(x, values)]
        ['aten.relu.default']
    """
    steps: list[Step] = []
    gen = torch.Generator().manual_seed(0)
    while len(node.users) == 1:
        user = next(iter(node.users))
        step = _step(user, node)
        example = values.get(node)
        if step is None or not isinstance(example, torch.Tensor) or not example.is_floating_point():
            break
        if not _elementwise(step, example, gen):
            break
        steps.append(step)
        node = user
    return tuple(steps)
