"""Loss and accuracy at many points of parameter space, each a linear combination of a few states.

A barrier path is `(1-a) A + a B`, a random-direction contour `θ + x d1 + y d2`, the plane through
three models an affine combination of them: every geometry measurement evaluates `Σ_k c[p, k] S_k`
for a coefficient matrix `c` (points x anchors) and anchor state dicts `S_k` (parameters and
buffers). This module does that once for all of them, in one of two ways.

- The walk (`batching="loop"`): a private copy of the model whose floating state lives in one flat
  vector, moved in place from each point to the next. Consecutive steps `c[p+1] - c[p]` along one
  direction (a grid row, a barrier line, a path segment) form a run: its first point is built afresh
  from the anchors, and each later point steps in place from the one before, one axpy along the
  run's direction (cached: a grid has one per axis, a path one per segment); every few points are
  recomputed from the run's start instead, so rounding does not accumulate along the walk. The
  outputs of a chunk of points are reduced to loss and accuracy together (`_Outputs`), so a point
  costs its forward passes and little else. Points are walked in the order given, so callers pass
  neighbours one after the other (`directions.serpentine` for grids); every chunk starts afresh too.
- vmap (`batching="vmap"`): a chunk of points goes through the network together,
  `torch.func.functional_call` under `vmap` over stacked parameters and buffers; it pays where
  single points leave the device idle.

`batching="auto"` walks on the CPU, where a point is compute bound and vmap is no faster
(benchmarks/surface_speed.py); on other devices it times both on one batch and takes the faster
(`_vmap_pays`). BatchNorm statistics recomputed at every point (`reset_on`) need train-mode passes
per point, so they always walk. The examples are a `Split` or any re-iterable of batches
(`landscape.data.batches`), the loss is cross-entropy or the user's criterion (`landscape.loss`), on
the prediction `landscape.models.outputs` takes from the model's output (`output=`).

Under torchrun, `parallel="data"` shards the examples and all-reduces the per-point sums (each rank
evaluates every point); `parallel="points"` gives each rank a block of points on all examples and
gathers the rows. Both give the single-process numbers.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from .. import dist
from ..choices import BATCHING, PARALLEL
from ..data.batches import Batch, Batches, Inputs, as_batches
from ..data.split import Split
from ..errors import check_choice
from ..loss import Criterion, LossSum, correct, counter, loss_sum
from ..models.outputs import Output, predict, prediction
from ..training.bn import reset_bn

State = Mapping[str, torch.Tensor]
Data = Split | Iterable[Batch]
EXAMPLES_PER_PASS = (
    32768  # points x examples pushed through the network at once (memory bound of a vmap chunk)
)
WALK_CHUNK = (
    128  # most points per chunk of the walk (between `on_chunk` calls, each chunk starting afresh)
)
CACHED_STEPS = 4  # step directions the walk keeps besides the anchors themselves
# within a run, the walk recomputes every 4th point from the run's start (others step in place)
EXACT_EVERY = 4
TIMED_POINTS = 8  # points vmap is timed on when `batching="auto"` measures which way is faster
HELD_OUTPUTS = 1 << 22  # network outputs (numbers) the walk holds before reducing them to sums


def same_layout(states: Sequence[State]) -> bool:
    """Whether the states have the same keys and shapes, so that they combine point by point.

    Args:
        states: state dicts (at least one).

    Returns:
        True when every state has the first one's keys, with the same shapes.

    Examples:
        >>> import torch
        >>> a, b = torch.nn.Linear(2, 1).state_dict(), torch.nn.Linear(2, 1).state_dict()
        >>> same_layout([a, b]), same_layout([a, torch.nn.Linear(3, 1).state_dict()])
        (True, False)
    """
    first = states[0]
    return all(
        s.keys() == first.keys() and all(s[k].shape == first[k].shape for k in first)
        for s in states[1:]
    )


def layout_difference(states: Sequence[State], align: str) -> str | None:
    """Why the states cannot be combined point by point (None when they can).

    Different layers (tensor names) no alignment changes; different widths (shapes of the same
    tensors) an alignment resolves, and the message says how (`align`).

    Args:
        states: state dicts, model 1 first.
        align: how the caller aligns models, as the message should name it (e.g. "`align` ot").

    Returns:
        A one-line message naming the first difference, or None.

    Examples:
        >>> import torch
        >>> a, b = torch.nn.Linear(2, 1).state_dict(), torch.nn.Linear(3, 1).state_dict()
        >>> print(layout_difference([a, a], "`align` ot"))
        None
        >>> print(layout_difference([a, b], "`align` ot"))
        models 1 and 2 have different widths (weight is (1, 2) and (1, 3)): align them first ...
    """
    first = states[0]
    for i, s in enumerate(states[1:], 2):
        if s.keys() != first.keys():
            key = min(first.keys() ^ s.keys())
            where = "model 1" if key in first else f"model {i}"
            return (
                f"models 1 and {i} have different layers ({len(first)} and {len(s)} tensors; {key} "
                "is only in "
                f"{where}): only models of one architecture and depth can be interpolated, aligned "
                "or not"
            )
        for key, value in first.items():
            if s[key].shape != value.shape:
                return (
                    f"models 1 and {i} have different widths ({key} is {tuple(value.shape)} and "
                    f"{tuple(s[key].shape)}): align them first ({align})"
                )
    return None


def _is_variance(key: str) -> bool:
    """Whether the state key is a BatchNorm running variance.

    Returns:
        True for `...running_var`.
    """
    return key.endswith("running_var")


def combine(anchors: Sequence[State], coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stacked states `(P, ...)` with `Σ_k coeffs[p, k] anchors[k]` at every point p.

    Integer buffers come from the first anchor. A `running_var` that an extrapolating combination
    would make negative is clamped at 0.

    Args:
        anchors: K state dicts of one layout.
        coeffs: (P, K) coefficients.

    Returns:
        Each key's P combinations, stacked along a new first dimension.

    Examples:
        >>> import torch
        >>> a = {"w": torch.tensor([0.0, 0.0]), "bn.running_var": torch.tensor([1.0])}
        >>> b = {"w": torch.tensor([2.0, 4.0]), "bn.running_var": torch.tensor([3.0])}
        >>> points = combine([a, b], torch.tensor([[0.5, 0.5], [2.0, -1.0]]))
        >>> points["w"].tolist(), points["bn.running_var"].tolist()  # 2 * 1 - 3 clamped at 0
        ([[1.0, 2.0], [-2.0, -4.0]], [[2.0], [0.0]])
    """
    out = {}
    for key, first in anchors[0].items():
        if first.is_floating_point():
            stacked = torch.stack([a[key].to(first.dtype) for a in anchors])  # (K, ...)
            value = torch.tensordot(coeffs.to(first.dtype), stacked, dims=1)  # (P, ...)
            out[key] = value.clamp_min(0) if _is_variance(key) else value
        else:
            out[key] = first.expand(len(coeffs), *first.shape)
    return out


class _Flat:
    """The floating tensors of one dtype of a model, made views into one flat vector the walk moves.

    `anchors` is `(K, N)`, the same entries of every anchor state; `start` is the point a run of
    steps started from. Running variances come last in `raw`; the model reads them from `var_live`,
    their part of `raw` clamped at 0, so that the walk itself stays linear while the model sees what
    `combine` builds.
    """

    def __init__(self, live: dict[str, torch.Tensor], keys: list[str], anchors: Sequence[State]):
        keys = sorted(keys, key=_is_variance)  # stable: running variances last
        first = live[keys[0]]
        self.anchors = torch.stack(
            [
                torch.cat([a[k].detach().reshape(-1).to(first.device, first.dtype) for k in keys])
                for a in anchors
            ]
        )
        self.raw, self.start = self.anchors[0].clone(), self.anchors[0].clone()
        n_plain = sum(live[k].numel() for k in keys if not _is_variance(k))
        self.var_raw = self.raw[n_plain:]
        self.var_live = self.var_raw.clone() if len(self.var_raw) else None
        offset = 0
        for k in keys:
            n = live[k].numel()
            source, begin = (
                (self.var_live, offset - n_plain) if _is_variance(k) else (self.raw, offset)
            )
            live[k].data = source[begin : begin + n].view(live[k].shape)
            offset += n
        self.directions: dict[tuple, torch.Tensor] = {}

    def start_at(self, c: torch.Tensor) -> None:
        """Move to the point `c @ anchors`, built afresh, and start a run of steps there."""
        torch.mv(self.anchors.T, c.to(self.raw.device, self.raw.dtype), out=self.start)
        self.raw.copy_(self.start)
        self._clamp()

    def move(self, alpha: float, from_start: bool, u: np.ndarray, key: tuple) -> None:
        """Move to `start + alpha * (u @ anchors)`, or by `alpha * (u @ anchors)` in place.

        One axpy either way; the direction is cached under `key` (u rounded).
        """
        direction = self.directions.get(key)
        if direction is None:
            direction = self._direction(u, key)
        if from_start:
            torch.add(self.start, direction, alpha=alpha, out=self.raw)
        else:
            self.raw.add_(direction, alpha=alpha)
        self._clamp()

    def _direction(self, u: np.ndarray, key: tuple) -> torch.Tensor:
        """The step direction `u @ anchors`, cached under `key` (an anchor itself for one entry).

        Returns:
            The flat direction.
        """
        nonzero = np.flatnonzero(u)
        if len(nonzero) == 1:  # along one anchor (a random direction): the anchor itself, no copy
            direction = self.anchors[int(nonzero[0])]
        else:
            direction = (torch.from_numpy(u).to(self.raw.device) @ self.anchors.double()).to(
                self.raw.dtype
            )
        if len(self.directions) >= CACHED_STEPS:
            del self.directions[next(iter(self.directions))]
        self.directions[key] = direction
        return direction

    def _clamp(self) -> None:
        """Refresh the running variances the model reads: their walked values clamped at 0."""
        if self.var_live is not None:
            torch.clamp(self.var_raw, min=0, out=self.var_live)


class _Walk:
    """A private copy of `model` (eval mode) whose floating state moves from point to point.

    Consecutive steps along one direction form a run: its first point is built afresh from the
    anchors, and later points step along the direction from the point before or from the start
    (`_plan`). Integer buffers (`num_batches_tracked`) are the first anchor's. The caller's model is
    never touched (the anchors are often its own `state_dict()`).
    """

    def __init__(self, model: nn.Module, anchors: Sequence[State]):
        self.model = copy.deepcopy(model).eval()
        live = self.model.state_dict(keep_vars=True)
        by_dtype: dict[torch.dtype, list[str]] = {}
        with torch.no_grad():
            for key, tensor in live.items():
                if tensor.is_floating_point():
                    by_dtype.setdefault(tensor.dtype, []).append(key)
                else:
                    tensor.copy_(anchors[0][key])
        self.flats = [_Flat(live, keys, anchors) for keys in by_dtype.values()]

    def visit(self, coeffs: np.ndarray) -> Iterator[None]:
        """Move the model to each row of `coeffs` (points x anchors) in turn, yielding at each.

        Yields:
            None, with the model at the point.
        """
        for row, move in zip(coeffs, _plan(coeffs)):
            for flat in self.flats:
                if move is None:
                    flat.start_at(torch.from_numpy(row))
                else:
                    flat.move(*move)
            yield


Move = tuple[float, bool, np.ndarray, tuple] | None


def _plan(coeffs: np.ndarray) -> list[Move]:
    """How the walk reaches each point: None where built afresh, else `_Flat.move`'s arguments.

    A step `c[p+1] - c[p]` is a multiple of `u`, the step over its largest entry (so opposite steps
    share it), and `u` rounded to 1e-12 is its key; a run is a stretch of steps with one key. The
    first point of every run of two or more steps is built, and so is the end of a lone step (a
    grid's step to the next row lands on the start of that row's run, built once). Within a run,
    every `EXACT_EVERY`-th point is the run's start plus `t u @ anchors`, and the others step in
    place from the point before, so that at most `EXACT_EVERY - 1` roundings pile up.

    Returns:
        One move per point.
    """
    d = np.diff(coeffs, axis=0)
    j = np.abs(d).argmax(1) if len(d) else np.zeros(0, dtype=int)
    scale = d[np.arange(len(d)), j]
    u = d / np.where(scale == 0, 1.0, scale)[:, None]
    keys = [tuple(k) for k in np.round(u, 12).tolist()]
    plan: list[Move] = [None]
    start = 0
    for p in range(1, len(coeffs)):
        into = keys[p - 1]
        out = keys[p] if p < len(keys) else None
        starts_run = out is not None and p + 1 < len(keys) and keys[p + 1] == out != into
        ends_lone_step = into != out and (p == 1 or keys[p - 2] != into)
        if starts_run or ends_lone_step:
            plan.append(None)
            start = p
        elif (p - start) % EXACT_EVERY == 0:
            i = j[p - 1]
            plan.append((float(coeffs[p, i] - coeffs[start, i]), True, u[p - 1], into))
        else:
            plan.append((float(scale[p - 1]), False, u[p - 1], into))
    return plan


def _pair(out: torch.Tensor, y: torch.Tensor, loss: LossSum) -> torch.Tensor:
    """The summed loss and the number of correct predictions of one batch's outputs.

    Returns:
        (2,): loss sum, correct.
    """
    return torch.stack([loss(out, y), correct(out, y)])


class _Outputs:
    """Sums `(S, P, 2)` of the loss and of correct predictions for a chunk of walked points.

    Their outputs come point after point (`add` for each batch, then `next_point`). With `batched`,
    the outputs are held per (split, batch) and reduced for many points at once under `vmap` (a
    dozen small operations per chunk rather than per point, which small models feel), at most about
    `HELD_OUTPUTS` numbers at a time; otherwise (a user's criterion, which need not be vmappable)
    each output is reduced as it comes.
    """

    def __init__(
        self, n_splits: int, n_points: int, loss: LossSum, batched: bool, device: torch.device
    ):
        self.sums = torch.zeros(n_splits, n_points, 2, dtype=torch.float64, device=device)
        self.loss, self.batched = loss, batched
        self.held: dict[tuple[int, int], tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self.first = self.point = self.size = (
            0  # held outputs are those of points first, first + 1, ...
        )

    def add(self, split: int, batch: int, out: torch.Tensor, y: torch.Tensor) -> None:
        """Take one batch's outputs at the current point."""
        if not self.batched:
            self.sums[split, self.point] += _pair(out, y, self.loss)
            return
        held = self.held.get((split, batch))
        if not self.held and not self.first:
            # Once outside vmap, where the criterion can check its inputs (nll: log-probabilities).
            self.loss(out, y)
        if held is None:
            held = self.held[split, batch] = (y, [])
        held[1].append(out)
        self.size += out.numel()

    def next_point(self) -> None:
        """Move on to the next point, reducing the held outputs when there are many."""
        self.point += 1
        if self.size >= HELD_OUTPUTS:
            self.flush()

    def flush(self) -> None:
        """Reduce every held output into `sums`."""
        for (split, _), (y, outs) in self.held.items():
            pairs = _batched_pair(torch.stack(outs), y, self.loss)
            self.sums[split, self.first : self.first + len(outs)] += pairs
        self.held.clear()
        self.first, self.size = self.point, 0


_batched_pair = vmap(_pair, in_dims=(0, None, None))


def _sums_walk(
    walk: _Walk,
    coeffs: np.ndarray,
    splits: Sequence[Iterable[Batch]],
    loss: LossSum,
    batched: bool,
    reset_on: Batches | None,
    device: torch.device,
    output: Output = None,
) -> torch.Tensor:
    """(S, P, 2) sums per split, walking the points.

    BatchNorm statistics are recomputed once per point, for all splits; the reset overwrites the
    walked running statistics, which is harmless since every point resets.

    Returns:
        The loss and correct sums per split and point.
    """
    outputs = _Outputs(len(splits), len(coeffs), loss, batched, device)
    for _ in walk.visit(coeffs):
        if reset_on is not None:
            reset_bn(walk.model, reset_on)
        for split, examples in enumerate(splits):
            for batch, (x, y) in enumerate(examples):
                outputs.add(split, batch, predict(walk.model, x, output), y)
        outputs.next_point()
    outputs.flush()
    return outputs.sums


def _functional(model: nn.Module, state: dict[str, torch.Tensor], x: Inputs) -> object:
    """`model` with parameters and buffers `state` called on `x` (as `models.outputs.call` does).

    Returns:
        The model's output.
    """
    if isinstance(x, torch.Tensor):
        return functional_call(model, state, (x,))
    if isinstance(x, Mapping):
        return functional_call(model, state, (), dict(x))
    return functional_call(model, state, tuple(x))


def _sums_vmap(
    model: nn.Module,
    states: dict[str, torch.Tensor],
    splits: Sequence[Iterable[Batch]],
    loss: LossSum,
    device: torch.device,
    output: Output = None,
) -> torch.Tensor:
    """(S, P, 2) sums of the loss and of correct predictions per split, all points batched.

    Returns:
        The loss and correct sums per split and point.
    """
    n_points = next(iter(states.values())).shape[0]
    sums = torch.zeros(len(splits), n_points, 2, dtype=torch.float64, device=device)

    def one(state: dict[str, torch.Tensor], x: Inputs, y: torch.Tensor) -> torch.Tensor:
        return _pair(prediction(_functional(model, state, x), output), y, loss)

    batched = vmap(one, in_dims=(0, None, None))
    for s, split in enumerate(splits):
        for x, y in split:
            sums[s] += batched(states, x, y).double()
    return sums


def _seconds(fn: Callable[[], torch.Tensor]) -> float:
    """Wall time of `fn` after one warm-up call (results copied to the host, so the device is done).

    Returns:
        Seconds.
    """
    fn().cpu()
    start = time.perf_counter()
    fn().cpu()
    return time.perf_counter() - start


def _vmap_pays(
    walk: _Walk,
    anchors: Sequence[State],
    coeffs: np.ndarray,
    batch: Batch | None,
    loss: LossSum,
    device: torch.device,
    output: Output = None,
) -> bool:
    """Whether vmap over the first `TIMED_POINTS` points costs less per point than walking.

    Timed on one batch. A collective: the timings of all ranks are summed, so every rank takes the
    same way. A rank without examples times nothing.

    Returns:
        True when vmap is faster.
    """
    times = torch.zeros(2, dtype=torch.float64, device=device)
    if batch is not None:
        first = coeffs[:TIMED_POINTS]
        next(walk.visit(first[:1]))
        states = combine(anchors, torch.from_numpy(first).to(device))
        # a walked point's reduction: ~free
        times[0] = _seconds(lambda: predict(walk.model, batch[0], output))
        times[1] = _seconds(
            lambda: _sums_vmap(walk.model, states, [[batch]], loss, device, output)
        ) / len(first)
    times = dist.all_reduce_sum(times)
    return bool(times[1] < times[0])


def _in_memory(batches: Batches) -> Iterable[Batch]:
    """The batches as a list when they are views of tensors already on their device, else as given.

    Sliced once, not once per point.

    Returns:
        The batches.
    """
    source = batches.source
    if isinstance(source, Split) and (batches.device is None or source.x.device == batches.device):
        return list(batches)
    return batches


def evaluate_points(
    model: nn.Module,
    anchors: Sequence[State],
    coeffs: torch.Tensor,
    splits: Sequence[Data],
    batch_size: int = 256,
    *,
    reset_on: Data | None = None,
    batching: str = "auto",
    parallel: str = "data",
    chunk: int | None = None,
    on_chunk: Callable[[range, torch.Tensor], None] | None = None,
    criterion: Criterion = "ce",
    output: Output = None,
) -> torch.Tensor:
    """Mean loss and accuracy of `model`'s architecture at the points `coeffs @ anchors`, per split.

    Every point is built (and its BatchNorm statistics recomputed) once for all splits; the walk and
    vmap are described in the module docstring. `model` is never modified: the points live in a
    private copy. An unknown `parallel` or `batching` is refused by `check_choice`.

    Args:
        model: a model of the anchors' architecture (its device is used).
        anchors: K state dicts.
        coeffs: (P, K) coefficients, one row per point.
        splits: S datasets, each a `Split` or any re-iterable of batches.
        batch_size: examples per batch of a `Split`.
        reset_on: recompute BatchNorm statistics on these examples at every point (always walked).
        batching: "loop" walks the points in the order given (pass neighbours consecutively),
            "vmap" batches them, "auto" walks on the CPU and times both elsewhere.
        parallel: under torchrun, "data" shards the examples, "points" the points.
        chunk: points walked between `on_chunk` calls [EXAMPLES_PER_PASS / examples per point, at
            most WALK_CHUNK], or per batched pass [EXAMPLES_PER_PASS / batch_size].
        on_chunk: called as `on_chunk(rows, values)` after every chunk with the finished rows
            `(S, len(rows), 2)` (for progress and resumable stores).
        criterion: the loss (`landscape.loss`), a mean over what it counts.
        output: which tensor of the model's output is the prediction (`landscape.models.outputs`).

    Returns:
        (S, P, 2): the mean loss and the accuracy per split and point, float64.

    Examples:
        Logits x W^T at W = 0 (loss log 2, the first class predicted) and at W = I:

        >>> import torch
        >>> from landscape.data.split import Split
        >>> model = torch.nn.Linear(2, 2, bias=False)
        >>> zero, eye = {"weight": torch.zeros(2, 2)}, {"weight": torch.eye(2)}
        >>> data = Split(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
        >>> values = evaluate_points(model, [zero, eye], torch.eye(2), [data])
        >>> values.shape, values.round(decimals=4).tolist()
        (torch.Size([1, 2, 2]), [[[0.6931, 0.5], [0.2201, 1.0]]])
    """
    check_choice(parallel, PARALLEL, "`parallel`")
    check_choice(batching, BATCHING, "`batching`")
    coeffs = torch.as_tensor(coeffs, dtype=torch.float64).cpu().numpy()
    n_points = coeffs.shape[0]
    device = next(model.parameters()).device
    by_points = parallel == "points" and dist.active()
    data = [as_batches(s, batch_size, device, sharded=not by_points) for s in splits]
    reset = (
        as_batches(reset_on, batch_size, device, sharded=not by_points)
        if reset_on is not None
        else None
    )
    loss = loss_sum(criterion)
    with dist.local() if by_points else contextlib.nullcontext():
        counts = [d.examples(counter(criterion)) for d in data]
    walk = _Walk(model, anchors)
    examples = [_in_memory(d) for d in data]
    with torch.inference_mode():
        walking = (
            reset is not None
            or batching == "loop"
            or (
                batching == "auto"
                and (
                    device.type == "cpu"
                    or n_points < 2 * TIMED_POINTS
                    or not _vmap_pays(walk, anchors, coeffs, data[0].first(), loss, device, output)
                )
            )
        )
        chunk = chunk or max(
            1,
            min(WALK_CHUNK, EXAMPLES_PER_PASS // max(sum(counts), 1))
            if walking
            else EXAMPLES_PER_PASS // min(batch_size, max(*counts, 1)),
        )

        def sums(rows: range) -> torch.Tensor:
            if walking:
                return _sums_walk(
                    walk,
                    coeffs[rows.start : rows.stop],
                    examples,
                    loss,
                    isinstance(criterion, str),
                    reset,
                    device,
                    output,
                )
            states = combine(anchors, torch.from_numpy(coeffs[rows.start : rows.stop]).to(device))
            return _sums_vmap(walk.model, states, examples, loss, device, output)

        mine = dist.shard(n_points) if by_points else range(n_points)
        result = torch.zeros(len(splits), n_points, 2, dtype=torch.float64, device=device)
        totals = torch.tensor(counts, dtype=torch.float64, device=device)[:, None, None]
        for start in range(mine.start, mine.stop, chunk):
            rows = range(start, min(start + chunk, mine.stop))
            if by_points:  # this rank alone, on every example
                with dist.local():
                    result[:, rows.start : rows.stop] = sums(rows) / totals
            else:
                result[:, rows.start : rows.stop] = dist.all_reduce_sum(sums(rows)) / totals
                if on_chunk is not None:
                    on_chunk(rows, result[:, rows.start : rows.stop])
        if by_points:
            result = dist.all_reduce_sum(result)  # every rank filled its own rows, zeros elsewhere
            if on_chunk is not None:
                on_chunk(range(n_points), result)
    return result.clone()  # an ordinary tensor again, outside inference mode
