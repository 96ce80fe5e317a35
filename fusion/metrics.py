"""Ground metrics between the units of a model and of the fused-model estimate.

Singh & Jaggi, "Model Fusion via Optimal Transport" (NeurIPS 2020), section 4 and Algorithm 1, lines
6-12.

- activation-based ("acts"): a unit's support is its activations on the given examples, eval mode,
  over all examples and spatial positions, read with forward hooks on the user's own modules (never
  by re-running the traced graph on another batch size). With `acts_at="pre"` (the default) they
  are the pre-activations: the output of the producer, or of the norm that alone reads it. With
  `acts_at="post"` they are what the elementwise functions that follow make of them (the
  nonlinearity, `fusion/elementwise.py`); units not followed by one keep their output. With
  several producers in a group (residual streams) the supports are concatenated, each member
  divided by its number of values, so the cost is the root mean squared difference of the
  activations.
- weight-based ("wts"): a unit's support is the row of incoming weights (and bias) of each producer
  in the group, its inputs first moved into the estimate's basis by the input group's map (Alg. 1
  line 9).
Both costs are Euclidean distances, computed from Gram matrices: |x - y|^2 = |x|^2 + |y|^2 - 2 x.y,
in the weights' own precision (float32: the Gram of a 4096 x 25088 layer is the dominant cost, twice
as fast as float64). Where the form cancels (|x - y|^2 much smaller than |x|^2 + |y|^2: nearly equal
rows, as when aligning a permuted copy) those entries are recomputed in float64 as |x - y|^2
directly (`weight_cost`). Importance marginals (paper S1.2): unit mass proportional to |mean| x std
of its activations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from landscape.errors import LandscapeError

from .batches import batch_length, chunks, run
from .elementwise import apply
from .graph import AlignmentGraph, Feature, Layer
from .transport import Map, move_axis


@dataclass
class Moments:
    """Sufficient statistics of one group's activations in a model (n units) and the estimate (m).

    Attributes:
        cross: (n, m): the sum over members of <a_i, b_j> / values per unit.
        sq_model: (n,): the sum over members of |a_i|^2 / values per unit.
        sq_estimate: (m,): the same for the estimate.
        importance_model: (n,): the mean over members of |mean| * std.
        importance_estimate: (m,): the same for the estimate.
        mean_model: (n,): the mean over members of each unit's mean.
        mean_estimate: (m,): the same for the estimate.
        members: features per unit (the producers of a residual stream).

    Examples:
        One unit on each side, activations (1, 3) and (3, 5) over two examples:

        >>> import torch
        >>> t = torch.tensor
        >>> mom = Moments(t([[9.0]]), t([5.0]), t([17.0]), t([2.0]), t([4.0]), t([2.0]),
        ...               t([4.0]), 1)
        >>> mom.cost().tolist(), mom.correlation().tolist()
        ([[2.0]], [[1.0]])
    """

    cross: torch.Tensor
    sq_model: torch.Tensor
    sq_estimate: torch.Tensor
    importance_model: torch.Tensor
    importance_estimate: torch.Tensor
    mean_model: torch.Tensor
    mean_estimate: torch.Tensor
    members: int

    def cost(self, metric: str = "euclidean") -> np.ndarray:
        """Ground cost between the model's and the estimate's units (n x m).

        Args:
            metric: one of `fusion.choices.GROUND_METRICS` (see `ground_cost`).

        Returns:
            The costs.
        """
        return ground_cost(self.cross, self.sq_model, self.sq_estimate, metric)

    def correlation(self) -> np.ndarray:
        """Pearson correlation between the model's and the estimate's units (n x m).

        Over all members' values, each member weighted equally; a unit with no variance correlates
        0 with everything.

        Returns:
            The correlations.
        """
        k = self.members
        cov = self.cross / k - self.mean_model[:, None] * self.mean_estimate[None, :]
        var_a = (self.sq_model / k - self.mean_model**2).clamp_min(0)
        var_b = (self.sq_estimate / k - self.mean_estimate**2).clamp_min(0)
        scale = (var_a[:, None] * var_b[None, :]).sqrt()
        return (
            torch.where(scale > 0, cov / scale.clamp_min(torch.finfo(scale.dtype).tiny), 0.0)
            .cpu()
            .numpy()
        )


def ground_cost(
    cross: torch.Tensor, sq_a: torch.Tensor, sq_b: torch.Tensor, metric: str = "euclidean"
) -> np.ndarray:
    """Pairwise costs from inner products and squared norms, in float64.

    Euclidean: sqrt(|a_i|^2 + |b_j|^2 - 2 <a_i, b_j>); "sqeuclidean": its square; "cosine": the
    cosine distance 1 - <a_i, b_j> / (|a_i| |b_j|), 1 where a vector is zero.

    Args:
        cross: (n, m) inner products <a_i, b_j>.
        sq_a: (n,) squared norms |a_i|^2.
        sq_b: (m,) squared norms |b_j|^2.
        metric: "euclidean", "sqeuclidean" or "cosine".

    Returns:
        The n x m costs.

    Examples:
        >>> import torch
        >>> a, b = torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 0.0]])
        >>> ground_cost(a @ b.T, (a * a).sum(1), (b * b).sum(1)).tolist()
        [[4.0]]
        >>> ground_cost(a @ b.T, (a * a).sum(1), (b * b).sum(1), "cosine").round(6).tolist()
        [[0.4]]
    """
    cross, sq_a, sq_b = cross.double(), sq_a.double(), sq_b.double()
    if metric == "cosine":
        norms = sq_a.clamp_min(0).sqrt()[:, None] * sq_b.clamp_min(0).sqrt()[None, :]
        return (
            (
                1
                - torch.where(
                    norms > 0, cross / norms.clamp_min(torch.finfo(norms.dtype).tiny), 0.0
                )
            )
            .cpu()
            .numpy()
        )
    d2 = (sq_a[:, None] + sq_b[None, :] - 2 * cross).clamp_min(0)
    return (d2 if metric == "sqeuclidean" else d2.sqrt()).cpu().numpy()


def normalise_cost(cost: np.ndarray, how: str = "none") -> np.ndarray:
    """The cost as the OT reference code can rescale it before solving.

    Unchanged ("none"), divided by its largest or median entry ("max", "median"), or log(1 + cost)
    ("log"). Scaling never changes an exact plan; "log" can.

    Args:
        cost: the ground cost.
        how: "none", "max", "median" or "log".

    Returns:
        The rescaled cost (`cost` itself for "none", or when the scale is 0).

    Examples:
        >>> import numpy as np
        >>> normalise_cost(np.array([[1.0, 3.0], [2.0, 4.0]]), "median").tolist()
        [[0.4, 1.2], [0.8, 1.6]]
    """
    if how == "log":
        return np.log1p(cost)
    if how in ("max", "median"):
        scale = float(cost.max() if how == "max" else np.median(cost))
        return cost / scale if scale > 0 else cost
    return cost


@contextlib.contextmanager
def _captured(
    model: nn.Module,
    graph: AlignmentGraph,
    wanted: dict[tuple[str, int], Feature],
    acts_at: str = "pre",
) -> Iterator[dict[tuple[str, int], torch.Tensor]]:
    """Yield the outputs of the wanted module calls as (channels, values) matrices, as it runs.

    Forward hooks on the user's own modules record each wanted (module path, call index); with
    `acts_at="post"` the feature's elementwise functions are applied to a copy first. A module with
    parameters called a different number of times, or a feature of another rank, than on the traced
    example (a model whose structure depends on the batch size) is an error, never a wrong
    activation.

    Raises:
        RuntimeError: a wanted module is not in the model (an internal error).
        LandscapeError: the model's calls differ from the traced example's.
    """
    out: dict[tuple[str, int], torch.Tensor] = {}
    modules = dict(model.named_modules())
    counts: dict[str, int] = {}
    expected = dict(graph.calls)

    def mismatch(path: str, what: str) -> str:
        return (
            f"module '{path}' {what} on this batch than on the traced example: the model's "
            "structure depends on the batch size (try another batch_size)"
        )

    def hook(path: str):
        def record(_module, _inputs, output) -> None:
            call = counts.get(path, 0)
            counts[path] = call + 1
            f = wanted.get((path, call))
            if f is None:
                return
            if not isinstance(output, torch.Tensor) or output.ndim != f.rank:
                raise LandscapeError(mismatch(path, "returns a tensor of another rank"))
            value = output.detach()
            if acts_at == "post" and f.after:
                value = apply(f.after, value.clone())
            out[(path, call)] = value.movedim(f.axis, 0).reshape(output.shape[f.axis], -1).clone()

        return record

    paths = sorted({path for path, _ in wanted} | set(expected))
    missing = [p for p in paths if p not in modules]
    if missing:
        raise RuntimeError(f"no module {missing[0]!r} to read activations from")
    handles = [modules[p].register_forward_hook(hook(p)) for p in paths]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()
    for path, n in expected.items():
        if counts.get(path, 0) != n:
            raise LandscapeError(
                mismatch(path, f"is called {counts.get(path, 0)} times instead of {n}")
            )


class _Accumulator:
    """Running sums of one model's features: Gram with the estimate, squared norms, moments."""

    def __init__(self) -> None:
        self.cross: dict[int, torch.Tensor] = {}
        self.sq: dict[int, torch.Tensor] = {}
        # per feature: count, mean, sum of squared deviations
        self.moments: dict[tuple[int, int], tuple[int, torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def _add(store: dict, key, value: torch.Tensor) -> None:
        store[key] = store[key] + value if key in store else value

    def update(
        self, gid: int, name: tuple[int, int], a: torch.Tensor, b: torch.Tensor | None, total: float
    ) -> None:
        """Add one chunk of features `a` (units, values) of `name` in group `gid`.

        Args:
            gid: the group.
            name: the feature, (group, member index).
            a: the model's features (units, values).
            b: the estimate's features of the same member, or None (for the estimate itself).
            total: the number of values per unit over all of `x`.
        """
        if b is not None:
            self._add(self.cross, gid, (a @ b.T).double() / total)
        self._add(self.sq, gid, (a * a).sum(1).double() / total)
        var, mean = torch.var_mean(a, dim=1, correction=0)  # centred per chunk: no cancellation
        n, mean, m2 = a.shape[1], mean.double(), var.double() * a.shape[1]
        if name in self.moments:  # pairwise combination of (count, mean, M2) (Chan et al.)
            n0, mean0, m20 = self.moments[name]
            delta = mean - mean0
            n, mean, m2 = (
                n0 + n,
                mean0 + delta * n / (n0 + n),
                m20 + m2 + delta**2 * n0 * n / (n0 + n),
            )
        self.moments[name] = (n, mean, m2)

    def importance(self, names: Sequence[tuple[int, int]]) -> torch.Tensor:
        """Return the mean over `names` of |mean| x std of each unit's features (paper S1.2)."""
        parts = [
            mean.abs() * (m2 / n).sqrt() for n, mean, m2 in (self.moments[name] for name in names)
        ]
        return torch.stack(parts).mean(0)

    def mean(self, names: Sequence[tuple[int, int]]) -> torch.Tensor:
        """Return the mean over `names` of each unit's mean feature."""
        return torch.stack([self.moments[name][1] for name in names]).mean(0)


def _wanted(graph: AlignmentGraph, gids: Sequence[int]) -> dict[tuple[str, int], Feature]:
    """Return the features of groups `gids` by (module path, call index)."""
    return {(f.module, f.call): f for gid in gids for f in graph.groups[gid].features}


def _features(graph: AlignmentGraph, gid: int, captured: dict) -> list[torch.Tensor]:
    """Return group `gid`'s rows of the captured outputs, one matrix per feature."""
    return [captured[(f.module, f.call)][f.start : f.stop] for f in graph.groups[gid].features]


@torch.no_grad()
def activation_moments(
    models: Sequence[nn.Module],
    estimate: nn.Module,
    graphs: Sequence[AlignmentGraph],
    estimate_graph: AlignmentGraph,
    x: object,
    batch_size: int = 100,
    acts_at: str = "pre",
) -> list[dict[int, Moments]]:
    """Per model and movable group with features: the moments of its and the estimate's activations.

    Args:
        models: the models aligned to the estimate.
        estimate: the estimate of the fused model.
        graphs: each model's own alignment graph (for its widths).
        estimate_graph: the estimate's alignment graph.
        x: the inputs, a tensor, tuple or dict batch (`fusion/batches.py`).
        batch_size: examples per forward pass.
        acts_at: "pre": the pre-activations; "post": after the elementwise nonlinearity that
            follows (the module docstring).

    Returns:
        One dict per model: group index -> `Moments`.

    Examples:
        A model against itself: zero cost on the diagonal, correlation 1:

        >>> import torch
        >>> from torch import nn
        >>> from fusion.graph import build_graph
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> x = torch.randn(16, 3)
        >>> graph = build_graph(net, x[:2])
        >>> moments = activation_moments([net], net, [graph], graph, x, acts_at="post")[0]
        >>> sorted(moments), moments[1].cost().diagonal().round(6).tolist()
        ([1], [0.0, 0.0, 0.0, 0.0])
    """
    gids = [gid for gid, g in enumerate(estimate_graph.groups) if not g.fixed and g.features]
    nets = [*list(models), estimate]
    states = [m.training for m in nets]
    for m in nets:
        m.eval()
    accs = [_Accumulator() for _ in nets]
    values: dict[tuple[int, int], float] = {}  # values per unit over all of x, per feature
    total = batch_length(x)
    try:
        for chunk in chunks(x, batch_size):
            wanted = _wanted(estimate_graph, gids)
            with _captured(estimate, estimate_graph, wanted, acts_at) as captured:
                run(estimate, chunk)
            ref = {gid: _features(estimate_graph, gid, captured) for gid in gids}
            for gid in gids:
                for i, f in enumerate(ref[gid]):
                    values.setdefault((gid, i), float(total) * f.shape[1] / batch_length(chunk))
                    accs[-1].update(gid, (gid, i), f, None, values[(gid, i)])
            for model, graph, acc in zip(models, graphs, accs):
                with _captured(model, graph, _wanted(graph, gids), acts_at) as captured:
                    run(model, chunk)
                for gid in gids:
                    for i, f in enumerate(_features(graph, gid, captured)):
                        acc.update(gid, (gid, i), f, ref[gid][i], values[(gid, i)])
    finally:
        for m, s in zip(nets, states):
            m.train(s)
    est = accs[-1]

    def keys(gid: int) -> list[tuple[int, int]]:
        return [(gid, i) for i in range(len(estimate_graph.groups[gid].features))]

    return [
        {
            gid: Moments(
                acc.cross[gid],
                acc.sq[gid],
                est.sq[gid],
                acc.importance(keys(gid)),
                est.importance(keys(gid)),
                acc.mean(keys(gid)),
                est.mean(keys(gid)),
                len(keys(gid)),
            )
            for gid in gids
        }
        for acc in accs[:-1]
    ]


def weight_rows(
    state: dict[str, torch.Tensor],
    graph: AlignmentGraph,
    gid: int,
    layers: Sequence[Layer],
    maps: dict[int, Map] | None,
) -> torch.Tensor:
    """Each unit's incoming weights and bias over `layers`, the group's producers.

    Args:
        state: the model's state dict.
        graph: its alignment graph.
        gid: the group.
        layers: the group's producers.
        maps: the transport maps of the input groups (Algorithm 1, line 9); None: inputs left as
            they are.

    Returns:
        One row per unit: its incoming weights and bias over all `layers`, concatenated.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from fusion.graph import build_graph
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> graph = build_graph(net, torch.zeros(2, 3))
        >>> state = dict(net.state_dict())
        >>> weight_rows(state, graph, 1, [graph.layers[0]], None).shape
        torch.Size([4, 4])
    """
    sizes = [g.size for g in graph.groups]
    rows = []
    for layer in layers:
        w = state[layer.weight]
        if maps is not None and layer.ins:
            w = move_axis(w, layer.in_axis, layer.ins, "in", maps, sizes)
        w = w.movedim(layer.out_axis, 0)
        for seg, off, length in graph.spans(layer.out):
            if seg.group == gid:
                rows.append(w[off : off + length].reshape(length, -1))
                if layer.bias is not None:
                    rows.append(state[layer.bias][off : off + length, None])
    dtype = torch.float64 if any(r.dtype == torch.float64 for r in rows) else rows[0].dtype
    return torch.cat([r.to(dtype) for r in rows], 1)


# entries with |x - y|^2 < CANCELLATION (|x|^2 + |y|^2) are recomputed in float64
CANCELLATION = 1e-2
PAIRS_PER_CHUNK = 1 << 24  # elements of the differences recomputed at once (128 MiB in float64)


def weight_cost(
    model_rows: torch.Tensor, estimate_rows: torch.Tensor, metric: str = "euclidean"
) -> np.ndarray:
    """Ground cost between rows of incoming weights (n x m).

    Euclidean, its square, or the cosine distance (half the squared distance of the rows scaled to
    unit length; 1 where a row is zero).

    The Gram form runs in the rows' precision. Its absolute error is about eps (|x|^2 + |y|^2), so
    where |x - y|^2 is below `CANCELLATION` of that scale the float32 value would be mostly
    rounding: those entries are recomputed in float64 from the rows themselves. Elsewhere the
    relative error stays below eps / CANCELLATION.

    Args:
        model_rows: the model's rows (n, d).
        estimate_rows: the estimate's rows (m, d).
        metric: "euclidean", "sqeuclidean" or "cosine".

    Returns:
        The n x m costs, float64.

    Examples:
        >>> import torch
        >>> weight_cost(torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 0.0], [0.0, 0.0]])).tolist()
        [[4.0, 5.0]]
    """
    a, b = model_rows, estimate_rows.to(model_rows.dtype)
    if metric == "cosine":
        norm_a, norm_b = a.norm(dim=1), b.norm(dim=1)
        a = a / norm_a.clamp_min(torch.finfo(a.dtype).tiny)[:, None]
        b = b / norm_b.clamp_min(torch.finfo(b.dtype).tiny)[:, None]
    sq_a, sq_b = (a * a).sum(1), (b * b).sum(1)
    scale = sq_a[:, None] + sq_b[None, :]
    d2 = (scale - 2 * (a @ b.T)).clamp_min(0)
    if a.dtype != torch.float64:
        i, j = torch.nonzero(d2 < CANCELLATION * scale, as_tuple=True)
        d2 = d2.double()
        step = max(1, PAIRS_PER_CHUNK // max(1, a.shape[1]))
        for k in range(0, len(i), step):
            ii, jj = i[k : k + step], j[k : k + step]
            d2[ii, jj] = ((a[ii].double() - b[jj].double()) ** 2).sum(1)
    if metric == "cosine":
        zero = (norm_a == 0)[:, None] | (norm_b == 0)[None, :]
        return torch.where(zero, 1.0, d2 / 2).cpu().numpy()
    return (d2 if metric == "sqeuclidean" else d2.sqrt()).cpu().numpy()
