"""The numeric equivariance test: how an operation the walk does not know acts on the units reaching
it.

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
    schema = getattr(target, "_schema", None)
    return schema is not None and any(
        a.alias_info is not None and a.alias_info.is_write for a in schema.arguments
    )


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.is_floating_point() and not a.is_complex():
        return torch.equal(a, b)
    if a.numel() and torch.isnan(a).all():
        return False
    scale = float(torch.nan_to_num(a.abs(), nan=0.0, posinf=0.0).max()) if a.numel() else 0.0
    return torch.allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, scale), equal_nan=True)


def random_like(rec: Record, v: torch.Tensor, data: bool) -> torch.Tensor:
    """Random values shaped like `v`: normal for data, in [0.5, 1.5) for parameters and constants
    (valid variances and divisors); integer and boolean tensors keep their recorded values.
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
    """Two element permutations of the layout's axis that permute units within each segment: a
    random cycle through all units, and the transposition of two units adjacent on that cycle
    (together they generate every permutation of the segment). Segments of the same units get the
    same permutation.
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
    """The axis of a parameter that would index channels: the broadcast-aligned one, else the first
    of that size (a norm's 1-D parameters).
    """
    a = axis - (rank - len(shape))
    if 0 <= a < len(shape) and shape[a] == size:
        return a
    return next((d for d, s in enumerate(shape) if s == size), None)


def generic(rec: Record, node: fx.Node, leaves: list[fx.Node], layouts: list[fx.Node]) -> NodeState:
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
    """Per output tensor: ("equi", k) if permuting the inputs' channels permutes output axes k the
    same way, ("inv",) if it leaves the output unchanged; None if neither holds.
    """
    out_b = run_node(rec, node, base)
    if out_b is None:
        return None
    result = None
    for perm in perms:
        moved = dict(base)
        for n in layouts:
            moved[n] = permuted(base[n], rec.state[n].axes, perm)
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
                    if b.shape == m.shape and close(m, permuted(b, k, perm))
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


def permuted(t: torch.Tensor, axes: tuple[int, ...], perm: torch.Tensor) -> torch.Tensor:
    """`t` with the elements of its axes `axes` (row-major, outermost first) reordered by `perm`."""
    if len(axes) == 1:
        return t.index_select(axes[0], perm)
    last = tuple(range(t.ndim - len(axes), t.ndim))
    moved = t.movedim(axes, last)
    flat = moved.reshape(*moved.shape[: t.ndim - len(axes)], -1).index_select(-1, perm)
    return flat.reshape(moved.shape).movedim(last, axes)


def _outputs(value, outcome, ref: Layout) -> NodeState:
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
