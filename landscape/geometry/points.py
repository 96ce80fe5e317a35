"""Loss and accuracy at many points of parameter space, each point a linear combination of a few states.

A barrier path is `(1-a) A + a B`, a random-direction contour `θ + x d1 + y d2`, the plane through three
models an affine combination of them: every geometry measurement evaluates `Σ_k c[p, k] S_k` for a
coefficient matrix `c` (points x anchors) and anchor state dicts `S_k` (parameters and buffers). This module
does that once for all of them.

With vmap, a chunk of points goes through the network together: `torch.func.functional_call` under `vmap`
over stacked parameters and buffers, so a 21-point path or a 25x25 grid is a few batched passes instead of
one Python loop per point; `prefers_vmap` says where that pays (benchmarks/surface_speed.py measures it).
`batching="loop"` runs the plain loop (load the point, evaluate), the reference the tests compare with, and
the only way when BatchNorm statistics are recomputed at every point (`reset_on`), since that needs train-mode
passes per point. The examples are a `Split` or any re-iterable of `(inputs, targets)` batches, and the loss is
cross-entropy or the user's criterion (`landscape.loss`).

Under torchrun, `parallel="data"` shards the examples and all-reduces the per-point sums (each rank
evaluates every point); `parallel="points"` gives each rank a block of points on all examples and gathers the
rows. Both give the single-process numbers.
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call, vmap

from .. import dist
from ..choices import BATCHING, PARALLEL
from ..data.batches import Batch, Batches, as_batches
from ..data.split import Split
from ..errors import LandscapeError
from ..loss import Criterion, LossSum, correct, loss_sum
from ..training.bn import reset_bn

State = Mapping[str, torch.Tensor]
Data = Split | Iterable[Batch]
EXAMPLES_PER_PASS = 32768  # points x examples pushed through the network at once (memory bound of a chunk)


def same_layout(states: Sequence[State]) -> bool:
    """Whether the states have the same keys and shapes, so that they can be combined point by point."""
    first = states[0]
    return all(s.keys() == first.keys() and all(s[k].shape == first[k].shape for k in first) for s in states[1:])


def combine(anchors: Sequence[State], coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stacked states `(P, ...)` with `Σ_k coeffs[p, k] anchors[k]`; integer buffers come from the first anchor.

    A `running_var` that an extrapolating combination would make negative is clamped at 0.
    """
    out = {}
    for key, first in anchors[0].items():
        if first.is_floating_point():
            stacked = torch.stack([a[key].to(first.dtype) for a in anchors])          # (K, ...)
            value = torch.tensordot(coeffs.to(first.dtype), stacked, dims=1)         # (P, ...)
            out[key] = value.clamp_min(0) if key.endswith("running_var") else value
        else:
            out[key] = first.expand(len(coeffs), *first.shape)
    return out


def prefers_vmap(device: torch.device) -> bool:
    """Whether batching points pays on `device`: on accelerators, where it amortises kernel launches.

    Not on the CPU: there every point is compute bound, and vmap's batched matmuls and grouped convolutions are
    no faster than one point at a time (results/surface_speed.txt), so the default there is the loop.
    """
    return device.type != "cpu"


def _point(states: dict[str, torch.Tensor], p: int) -> dict[str, torch.Tensor]:
    return {k: v[p] for k, v in states.items()}


def _sums_loop(model: nn.Module, states: dict[str, torch.Tensor], splits: Sequence[Batches], loss: LossSum,
               reset_on: Batches | None) -> torch.Tensor:
    """(S, P, 2) sums of the loss and of correct predictions per split, one point at a time (BatchNorm
    statistics recomputed once per point, for all splits)."""
    n_points = next(iter(states.values())).shape[0]
    sums = torch.zeros(len(splits), n_points, 2, dtype=torch.float64, device=_device(model))
    for p in range(n_points):
        model.load_state_dict(_point(states, p))
        if reset_on is not None:
            reset_bn(model, reset_on)
        model.eval()
        with torch.no_grad():
            for s, split in enumerate(splits):
                for x, y in split:
                    out = model(x)
                    sums[s, p, 0] += loss(out, y).double()
                    sums[s, p, 1] += correct(out, y).double()
    return sums


def _sums_vmap(model: nn.Module, states: dict[str, torch.Tensor], splits: Sequence[Batches], loss: LossSum
               ) -> torch.Tensor:
    """(S, P, 2) sums of the loss and of correct predictions per split, all points of `states` batched."""
    model.eval()
    n_points = next(iter(states.values())).shape[0]
    sums = torch.zeros(len(splits), n_points, 2, dtype=torch.float64, device=_device(model))

    def one(state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, state, (x,))
        return torch.stack([loss(out, y), correct(out, y)])

    batched = vmap(one, in_dims=(0, None, None))
    with torch.no_grad():
        for s, split in enumerate(splits):
            for x, y in split:
                sums[s] += batched(states, x, y).double()
    return sums


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def evaluate_points(model: nn.Module, anchors: Sequence[State], coeffs: torch.Tensor, splits: Sequence[Data],
                    batch_size: int = 256, *, reset_on: Data | None = None, batching: str = "auto",
                    parallel: str = "data", chunk: int | None = None,
                    on_chunk: Callable[[range, torch.Tensor], None] | None = None,
                    criterion: Criterion = "ce") -> torch.Tensor:
    """Mean loss and accuracy `(S, P, 2)` of `model`'s architecture at the points `coeffs @ anchors` on each of
    the `splits`; every point is built (and its BatchNorm statistics recomputed) once for all splits.

    `reset_on`: recompute BatchNorm statistics on these examples at every point (plain loop). `batching`:
    "vmap" batches points, "loop" evaluates one at a time, "auto" chooses with `prefers_vmap`. `chunk`: points
    per batched pass [EXAMPLES_PER_PASS / batch_size]. `on_chunk(rows, values)` is called after every chunk with
    the finished rows `(S, len(rows), 2)` (for progress and resumable stores). `model` is never modified: the
    loop loads points into a private copy, since the anchors are often `model.state_dict()` itself and would
    move with it.
    """
    if parallel not in PARALLEL:
        raise LandscapeError(f"parallel must be one of {', '.join(PARALLEL)}, got {parallel!r}")
    if batching not in BATCHING:
        raise LandscapeError(f"batching must be one of {', '.join(BATCHING)}, got {batching!r}")
    coeffs = torch.as_tensor(coeffs, dtype=torch.float64)
    n_points = coeffs.shape[0]
    device = _device(model)
    by_points = parallel == "points" and dist.active()
    data = [as_batches(s, batch_size, device, sharded=not by_points) for s in splits]
    reset = as_batches(reset_on, batch_size, device, sharded=not by_points) if reset_on is not None else None
    loss = loss_sum(criterion)
    looped = reset is not None or batching == "loop" or (batching == "auto" and not prefers_vmap(device))
    with dist.local() if by_points else contextlib.nullcontext():
        counts = [d.examples() for d in data]
    chunk = chunk or max(1, EXAMPLES_PER_PASS // min(batch_size, max(*counts, 1)))
    if looped:
        chunk = min(chunk, 8)
        model = copy.deepcopy(model)
    mine = dist.shard(n_points) if by_points else range(n_points)
    result = torch.zeros(len(splits), n_points, 2, dtype=torch.float64, device=device)
    totals = torch.tensor(counts, dtype=torch.float64, device=device)[:, None, None]
    for start in range(0, len(mine) if by_points else n_points, chunk):
        rows = range(mine.start + start, min(mine.start + start + chunk, mine.stop))
        states = combine(anchors, coeffs[rows.start:rows.stop].to(device))
        if by_points:  # this rank alone, on every example
            with dist.local():
                sums = _evaluate_sums(model, states, data, loss, reset, looped)
        else:
            sums = dist.all_reduce_sum(_evaluate_sums(model, states, data, loss, reset, looped))
        result[:, rows.start:rows.stop] = sums / totals
        if on_chunk is not None and not by_points:
            on_chunk(rows, result[:, rows.start:rows.stop])
    if by_points:
        result = dist.all_reduce_sum(result)  # every rank filled its own rows, zeros elsewhere
        if on_chunk is not None:
            on_chunk(range(n_points), result)
    return result


def _evaluate_sums(model: nn.Module, states: dict[str, torch.Tensor], splits: Sequence[Batches], loss: LossSum,
                   reset_on: Batches | None, looped: bool) -> torch.Tensor:
    if looped:
        return _sums_loop(model, states, splits, loss, reset_on)
    return _sums_vmap(model, states, splits, loss)
