"""Ground metrics between the units of a model and of the fused-model estimate (paper section 4, Alg. 1 l. 6-12).

- activation-based ("acts"): a unit's support is its pre-activations (output of the producer, or of the
  BatchNorm right after it) on the given examples, eval mode, over all examples and spatial positions.
  With several producers in a group (residual streams) the supports are concatenated, each member divided by
  its number of values, so the cost is the root mean squared difference of the activations.
- weight-based ("wts"): a unit's support is the row of incoming weights (and bias) of each producer in the
  group, its inputs first moved into the estimate's basis by the input group's map (Alg. 1 line 9).
Both costs are Euclidean distances, computed from Gram matrices: |x - y|^2 = |x|^2 + |y|^2 - 2 x.y.
Importance marginals (paper S1.2): unit mass proportional to |mean| x std of its pre-activations.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .graph import AlignmentGraph
from .transport import Map


@dataclass
class Moments:
    """Sufficient statistics of one group's pre-activations in a model (n units) and the estimate (m units)."""

    cross: torch.Tensor        # (n, m): sum over members of <a_i, b_j> / values per unit
    sq_model: torch.Tensor     # (n,): sum over members of |a_i|^2 / values per unit
    sq_estimate: torch.Tensor  # (m,)
    importance_model: torch.Tensor     # (n,): mean over members of |mean| * std
    importance_estimate: torch.Tensor  # (m,)

    def cost(self) -> np.ndarray:
        """Euclidean ground cost between the model's and the estimate's units (n x m)."""
        return euclidean(self.cross, self.sq_model, self.sq_estimate)


def euclidean(cross: torch.Tensor, sq_a: torch.Tensor, sq_b: torch.Tensor) -> np.ndarray:
    """Pairwise distances sqrt(|a_i|^2 + |b_j|^2 - 2 <a_i, b_j>) from inner products and squared norms."""
    d2 = sq_a.double()[:, None] + sq_b.double()[None, :] - 2 * cross.double()
    return d2.clamp_min(0).sqrt().cpu().numpy()


@contextlib.contextmanager
def _captured(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named modules as (units, values) matrices while the block runs."""
    out: dict[str, torch.Tensor] = {}
    modules = dict(model.named_modules())

    def hook(name: str):
        def record(_module, _inputs, output: torch.Tensor) -> None:
            out[name] = output.detach().transpose(0, 1).reshape(output.shape[1], -1).clone()
        return record

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


class _Accumulator:
    """Running sums of one model's features: Gram with the estimate, squared norms, means and variances."""

    def __init__(self) -> None:
        self.cross: dict[int, torch.Tensor] = {}
        self.sq: dict[int, torch.Tensor] = {}
        self.moments: dict[str, tuple[int, torch.Tensor, torch.Tensor]] = {}   # count, mean, sum of sq. deviations

    @staticmethod
    def _add(store: dict, key, value: torch.Tensor) -> None:
        store[key] = store[key] + value if key in store else value

    def update(self, gid: int, name: str, a: torch.Tensor, b: torch.Tensor | None, total: float) -> None:
        """Add one chunk of features `a` (units, values) of `name` in group `gid`; `b`: the estimate's."""
        if b is not None:
            self._add(self.cross, gid, (a @ b.T).double() / total)
        self._add(self.sq, gid, (a * a).sum(1).double() / total)
        var, mean = torch.var_mean(a, dim=1, correction=0)   # centred per chunk: no cancellation
        n, mean, m2 = a.shape[1], mean.double(), var.double() * a.shape[1]
        if name in self.moments:   # pairwise combination of (count, mean, M2) (Chan et al.)
            n0, mean0, m20 = self.moments[name]
            delta = mean - mean0
            n, mean, m2 = n0 + n, mean0 + delta * n / (n0 + n), m20 + m2 + delta ** 2 * n0 * n / (n0 + n)
        self.moments[name] = (n, mean, m2)

    def importance(self, names: Sequence[str]) -> torch.Tensor:
        """Mean over `names` of |mean| x std of each unit's features (paper S1.2)."""
        parts = [mean.abs() * (m2 / n).sqrt() for n, mean, m2 in (self.moments[name] for name in names)]
        return torch.stack(parts).mean(0)


@torch.no_grad()
def activation_moments(models: Sequence[nn.Module], estimate: nn.Module, graph: AlignmentGraph, x: torch.Tensor,
                       batch_size: int = 100) -> list[dict[int, Moments]]:
    """Per model, per movable group: the moments of its pre-activations against the estimate's on inputs `x`."""
    groups = {gid: g for gid, g in enumerate(graph.groups) if not g.fixed}
    names = [n for g in groups.values() for n in g.features]
    nets = [*list(models), estimate]
    states = [m.training for m in nets]
    for m in nets:
        m.eval()
    accs = [_Accumulator() for _ in nets]
    values: dict[str, float] = {}   # values per unit over all of x, per feature module
    try:
        for chunk in x.split(batch_size):
            with _captured(estimate, names) as ref:
                estimate(chunk)
            for name, f in ref.items():
                values.setdefault(name, float(len(x)) * f.shape[1] / len(chunk))
            for gid, g in groups.items():
                for name in g.features:
                    accs[-1].update(gid, name, ref[name], None, values[name])
            for model, acc in zip(models, accs):
                with _captured(model, names) as feats:
                    model(chunk)
                for gid, g in groups.items():
                    for name in g.features:
                        acc.update(gid, name, feats[name], ref[name], values[name])
    finally:
        for m, s in zip(nets, states):
            m.train(s)
    est = accs[-1]
    return [{gid: Moments(acc.cross[gid], acc.sq[gid], est.sq[gid], acc.importance(g.features),
                          est.importance(g.features)) for gid, g in groups.items()} for acc in accs[:-1]]


def weight_rows(state: dict[str, torch.Tensor], graph: AlignmentGraph, producers: Sequence[str],
                maps: dict[int, Map] | None) -> torch.Tensor:
    """Each unit's incoming weights and bias over `producers`, inputs moved by `maps` (None: left as they are)."""
    rows = []
    for name in producers:
        layer = graph.layer(name)
        w = state[f"{name}.weight"].double()
        if maps is not None and layer.in_group in maps:
            w = maps[layer.in_group].move_inputs(w, layer.in_block)
        rows.append(w.reshape(w.shape[0], -1))
        if f"{name}.bias" in state:
            rows.append(state[f"{name}.bias"].double()[:, None])
    return torch.cat(rows, 1)


def weight_cost(model_rows: torch.Tensor, estimate_rows: torch.Tensor) -> np.ndarray:
    """Euclidean ground cost between rows of incoming weights (n x m)."""
    return euclidean(model_rows @ estimate_rows.T, (model_rows ** 2).sum(1), (estimate_rows ** 2).sum(1))
