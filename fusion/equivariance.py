"""The numeric equivariance test: how an unknown operation acts on the units reaching it.

The operation is re-run on random data with its inputs' channels permuted (two permutations per
segment that together generate every permutation of its units; parameters that may be per-channel
permuted too). If the output is the same permutation of the original output (on whichever axis
matches), the layout passes through and the per-channel parameters are bound to it; if the output is
unchanged, it carries no units (a reduction over channels); otherwise the units reaching the
operation are frozen.
"""

from __future__ import annotations

import math

import torch
from torch import fx
from torch.utils import _pytree as pytree

from .layout import Layout
from .record import Fixed, NodeState, Param, Record


def _mutates(target) -> bool:
    """Return whether the operator writes to one of its arguments (per its schema)."""
    schema = getattr(target, "_schema", None)
    return schema is not None and any(
        a.alias_info is not None and a.alias_info.is_write for a in schema.arguments
    )


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two results of an operation agree to float rounding.

    Shapes and dtypes must match; integer and boolean tensors must be equal; floating-point ones
    agree within a relative tolerance of 1e-4 and an absolute one of 1e-5 times the largest finite
    magnitude of `a` (at least 1e-5), NaN matching NaN. A result that is NaN everywhere agrees with
    nothing.

    Args:
        a: the expected tensor.
        b: the tensor compared with it.

    Returns:
        True if they agree.

    Examples:
        >>> import torch
        >>> close(torch.ones(3), torch.ones(3) + 1e-7), close(torch.ones(3), torch.zeros(3))
        (True, False)
    """
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.is_floating_point() and not a.is_complex():
        return torch.equal(a, b)
    if a.numel() and torch.isnan(a).all():
        return False
    scale = float(torch.nan_to_num(a.abs(), nan=0.0, posinf=0.0).max()) if a.numel() else 0.0
    return torch.allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, scale), equal_nan=True)


def random_like(rec: Record, v: torch.Tensor, data: bool) -> torch.Tensor:
    """Random values shaped like `v`, drawn from the walk's generator.

    Standard normal for data, uniform in [0.5, 1.5) for parameters and constants (valid variances
    and divisors); integer and boolean tensors keep their recorded values.

    Args:
        rec: the walk's record (its generator).
        v: the recorded value.
        data: whether `v` is data (a tensor that carries units) rather than a parameter or
            constant.

    Returns:
        A new tensor with `v`'s shape, dtype and device.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from fusion.export import trace
        >>> from fusion.record import Record
        >>> rec = Record(trace(nn.Linear(3, 4), torch.randn(2, 3)))
        >>> r = random_like(rec, torch.zeros(2, 3), data=False)
        >>> r.shape, bool(((r >= 0.5) & (r < 1.5)).all())
        (torch.Size([2, 3]), True)
        >>> random_like(rec, torch.arange(3), data=True)
        tensor([0, 1, 2])
    """
    if not v.is_floating_point():
        return v.clone()
    r = (
        torch.randn(v.shape, generator=rec.gen, dtype=torch.float64)
        if data
        else torch.rand(v.shape, generator=rec.gen, dtype=torch.float64) + 0.5
    )
    return r.to(device=v.device, dtype=v.dtype)


def unit_perms(rec: Record, layout: Layout, device) -> list[torch.Tensor]:
    """Two permutations of the layout's elements that permute units within each segment.

    A random cycle through all units, and the transposition of two units adjacent on that cycle:
    together they generate every permutation of the segment. A unit's block of elements moves
    whole; segments of the same units get the same permutation.

    Args:
        rec: the walk's record (its generator).
        layout: the units along the axis.
        device: where the index tensors go.

    Returns:
        The cycle and the transposition, as index tensors over the layout's elements.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from fusion.export import trace
        >>> from fusion.record import Record
        >>> rec = Record(trace(nn.Linear(3, 4), torch.randn(2, 3)))
        >>> from fusion.layout import Layout, Seg
        >>> unit_perms(rec, Layout(0, (Seg(0, 0, 3),)), "cpu")
        [tensor([1, 2, 0]), tensor([2, 1, 0])]

        Units of two elements, then a single unit of another group (which stays):

        >>> unit_perms(rec, Layout(0, (Seg(0, 0, 2, inner=2), Seg(1, 0, 1))), "cpu")
        [tensor([2, 3, 0, 1, 4]), tensor([2, 3, 0, 1, 4])]
    """
    cycle, swap, off, memo = [], [], 0, {}
    for s in layout.segs:
        key = (s.group, s.start, s.n)
        if key not in memo:
            order = torch.randperm(s.n, generator=rec.gen)
            c, t = torch.arange(s.n), torch.arange(s.n)
            if s.n > 1:
                c[order] = order.roll(-1)
                t[order[0]], t[order[1]] = order[1], order[0]
            memo[key] = (c, t)
        for units, out in zip(memo[key], (cycle, swap)):
            idx = (units[:, None] * s.inner + torch.arange(s.inner)[None]).reshape(-1)
            block = s.n * s.inner
            out.extend(
                (idx[None] + block * torch.arange(s.outer)[:, None] + off).reshape(-1).tolist()
            )
        off += s.length
    return [torch.tensor(p, device=device) for p in (cycle, swap)]


def run_node(rec: Record, node: fx.Node, env: dict[fx.Node, object]):
    """Run one node's operation on other inputs.

    Arguments missing from `env` take their recorded values; an operation that writes to its
    inputs gets copies.

    Args:
        rec: the walk's record (the recorded values).
        node: the node to run.
        env: replacement values of some of its argument nodes.

    Returns:
        The operation's result, or None if it raises (an operation that cannot run on permuted
        inputs is not equivariant).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from fusion.export import trace
        >>> from fusion.record import Record
        >>> rec = Record(trace(nn.Sequential(nn.Linear(3, 2), nn.ReLU()), torch.randn(2, 3)))
        >>> relu = next(n for n in rec.tr.graph.nodes if n.name == "relu")
        >>> run_node(rec, relu, {relu.args[0]: torch.tensor([[-1.0, 2.0]])})
        tensor([[0., 2.]])
    """
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env.get(n, rec.values[n]))
    if _mutates(node.target):
        args, kwargs = pytree.tree_map(
            lambda v: v.clone() if isinstance(v, torch.Tensor) else v, (args, kwargs)
        )
    try:
        with torch.no_grad():
            return node.target(*args, **kwargs)
    # An operation that cannot run on permuted inputs is not equivariant.
    except Exception:  # noqa: BLE001
        return None


def _param_axis(shape: tuple[int, ...], rank: int, axis: int, size: int) -> int | None:
    """Return the axis of a parameter that would index channels, or None.

    The broadcast-aligned one, else the first of that size (a norm's 1-D parameters).
    """
    a = axis - (rank - len(shape))
    if 0 <= a < len(shape) and shape[a] == size:
        return a
    return next((d for d, s in enumerate(shape) if s == size), None)


def generic(rec: Record, node: fx.Node, leaves: list[fx.Node], layouts: list[fx.Node]) -> NodeState:
    """The state of an operation's output, decided by the numeric equivariance test.

    The operation is re-run on random inputs, then with the channels of the inputs that carry
    units permuted by `unit_perms` of the first one. Hypotheses are tried in order: the
    per-channel parameters permuted too (they are then bound to the units, as a norm's weight),
    then only the data permuted, then tensors fusion cannot move (constants, computed parameters)
    permuted as well (the units are then fixed). If some hypothesis makes every output either the
    same permutation of the original along some axis (the layout passes through; several inputs
    are merged) or unchanged (no units), that is the result; otherwise the units reaching the
    operation are frozen.

    Args:
        rec: the walk's record (updated: pairs, bindings, fixes and freeze events).
        node: the operation.
        leaves: its tensor inputs.
        layouts: those inputs whose state is a `Layout`, at least one not fixed from birth.

    Returns:
        The state of the node's output: a `Layout`, `Fixed`, or a tuple of them for several outputs.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from fusion.export import trace
        >>> from fusion.walk import Walk
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> walk = Walk(trace(model, torch.randn(2, 3)))
        >>> walk.run()
        >>> relu = next(n for n in walk.tr.graph.nodes if n.name == "relu")
        >>> generic(walk, relu, [relu.args[0]], [relu.args[0]]) == walk.state[relu.args[0]]
        True
    """
    live = [n for n in layouts if not rec.units.known_fixed(rec.state[n])]
    ref_node = live[0]
    ref = rec.state[ref_node]
    size, rank = ref.length, rec.values[ref_node].ndim
    if any(rec.state[n].length != size for n in layouts):
        return rec.freeze(
            node, [rec.state[n] for n in layouts], "its inputs have different numbers of channels"
        )
    device = rec.values[ref_node].device
    perms = unit_perms(rec, ref, device)
    base = {n: random_like(rec, rec.values[n], data=n in layouts) for n in leaves}
    params, fixed = {}, []
    for n in (
        leaves if not ref.outer_axes else ()
    ):  # per-channel tensors: not on layouts split into heads
        k = rec.state[n]
        if isinstance(k, Param):
            ax = _param_axis(rec.shape(n), rank, ref.axis, size)
            if ax is not None and k.prov[ax]:
                params[n] = ax
                continue
        if isinstance(k, (Param, Fixed)):
            s = rec.shape(n)
            a = ref.axis - (rank - len(s))
            if 0 <= a < len(s) and s[a] == size > 1:
                fixed.append((n, a))
    # per-channel parameters are tried permuted first: a norm's weight must move with its units
    hypotheses = []
    if params:
        hypotheses.append((params, []))
    hypotheses.append(({}, []))
    if fixed:
        hypotheses.append((params, fixed))
    for pp, ff in hypotheses:
        outcome = _test(rec, node, layouts, base, {**pp, **dict(ff)}, perms, size, ref.axes, rank)
        if outcome is None or (pp and any(o == ("inv",) for o in outcome)):
            continue
        for n in layouts:
            if n is not ref_node and not rec.units.unify(ref, rec.state[n]):
                return rec.freeze(
                    node,
                    [rec.state[m] for m in layouts],
                    "it combines channels laid out in incompatible blocks",
                )
        for n, ax in pp.items():
            for key, pax in rec.state[n].prov[ax]:
                rec.bind(key, pax, "out", ref, node)
        if ff:
            if all(isinstance(rec.state[n], Fixed) and rec.state[n].from_input for n, _ in ff):
                rec.units.fix(ref, "combined with the network input")
            else:
                ev = rec.event(
                    node,
                    "it combines the channels with a tensor fusion cannot move (a constant or "
                    "a computed parameter)",
                )
                rec.units.fix(ref, f"frozen at {rec.where(node)}", ev)
        return _outputs(rec.values[node], outcome, ref)
    return rec.freeze(
        node,
        [rec.state[n] for n in layouts],
        "permuting its input channels does not permute its output",
    )


def _test(rec: Record, node, layouts, base, extra, perms, size, axes, rank):
    """Return how permuting the inputs' channels acts on each output tensor, or None.

    ("equi", k) if it permutes output axes k the same way, ("inv",) if it leaves the output
    unchanged; None if neither holds for some output.
    """
    out_b = run_node(rec, node, base)
    if out_b is None:
        return None
    result = None
    for perm in perms:
        moved = dict(base)
        for n in layouts:
            moved[n] = _permuted(base[n], rec.state[n].axes, perm)
        for n, ax in extra.items():
            moved[n] = base[n].index_select(ax, perm)
        out_m = run_node(rec, node, moved)
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
            if (
                len(axes) > 1
            ):  # a layout split into heads stays on the same (broadcast-aligned) axes
                shifted = tuple(a - (rank - b.ndim) for a in axes)
                ok = (
                    all(0 <= a < b.ndim for a in shifted)
                    and math.prod(b.shape[a] for a in shifted) == size
                )
                cands = [shifted] if ok else []
            else:
                cands = [(k,) for k in range(b.ndim) if b.shape[k] == size]
                cands.sort(key=lambda k: (k[0] != axes[0] - (rank - b.ndim), k[0] != axes[0], k))
            hit = next(
                (
                    ("equi", k)
                    for k in cands
                    if b.shape == m.shape and close(m, _permuted(b, k, perm))
                ),
                None,
            )
            if hit is None and close(m, b):
                hit = ("inv",)
            if hit is None:
                return None
            found.append(hit)
        if result is not None and found != result:
            return None
        result = found
    return result


def _permuted(t: torch.Tensor, axes: tuple[int, ...], perm: torch.Tensor) -> torch.Tensor:
    """Return `t` with the elements of axes `axes` (row-major, outermost first) reordered."""
    if len(axes) == 1:
        return t.index_select(axes[0], perm)
    last = tuple(range(t.ndim - len(axes), t.ndim))
    moved = t.movedim(axes, last)
    flat = moved.reshape(*moved.shape[: t.ndim - len(axes)], -1).index_select(-1, perm)
    return flat.reshape(moved.shape).movedim(last, axes)


def _outputs(value, outcome, ref: Layout) -> NodeState:
    """Return the states of the outputs the test found: layouts of `ref`'s units, or `Fixed`."""
    kinds = iter(
        [
            Layout(o[1][-1], ref.segs, o[1][:-1])
            if o and o[0] == "equi"
            else Fixed(False)
            if o
            else None
            for o in outcome
        ]
    )
    if isinstance(value, torch.Tensor):
        return next(kinds)
    if isinstance(value, (list, tuple)):
        return tuple(next(kinds) if isinstance(v, torch.Tensor) else None for v in value)
    return None
