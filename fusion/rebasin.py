"""Git Re-Basin on the alignment graph: one permutation per movable unit group, by assignment.

Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation Symmetries", ICLR
2023.

- Weight matching (their Algorithm 1): maximise `sum over parameters <W_B, P W_A>`, where `P W_A` is
  A's parameter with every unit-indexed axis permuted by its group's permutation. Coordinate
  descent: for one group at a time, with all other permutations held, the objective is linear in
  that group's permutation, `<S, P>` with `S[i, j] = sum over the axes of its units <A's slice of
  unit i, B's slice of unit j>` (A's other axes permuted), so it is one linear assignment. Groups
  are visited in a random order (seeded) each sweep, and sweeps repeat until no group's permutation
  improves the objective.
- Activation matching (their section 3.1): per group, the permutation that maximises the summed
  Pearson correlation between A's and B's activations on the given examples (before the
  nonlinearity, or after it with `acts_at="post"`); one assignment per group.

Every axis the alignment graph binds to units (weight rows and columns, biases, norms, residual
streams through adds and concatenations) enters the objective, so Re-Basin works on every model OT
fusion handles. BatchNorm statistics are buffers, not parameters: they are moved with their units
but do not enter the objective.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch

from landscape.errors import LandscapeError

from .graph import AlignmentGraph, Binding
from .metrics import Moments
from .transport import Map, assignment, move_axis

MAX_SWEEPS = 100


def check_widths(graph: AlignmentGraph, anchor_graph: AlignmentGraph) -> list[int]:
    """The movable groups, after checking that both models have the same width in each.

    A permutation needs equal widths.

    Args:
        graph: the model's alignment graph.
        anchor_graph: the anchor's (same structure).

    Returns:
        The indices of the groups that are not fixed.

    Raises:
        LandscapeError: a group has different widths in the two graphs.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from fusion.graph import build_graph
        >>> example = torch.zeros(2, 3)
        >>> graphs = [build_graph(nn.Sequential(nn.Linear(3, n), nn.ReLU(), nn.Linear(n, 2)),
        ...                       example) for n in (4, 4, 5)]
        >>> check_widths(graphs[0], graphs[1])
        [1]
        >>> check_widths(graphs[0], graphs[2])
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: Re-Basin permutes units, so the models need equal ...
    """
    movable = []
    for gid, (g, h) in enumerate(zip(graph.groups, anchor_graph.groups)):
        if g.size != h.size:
            layer = (h.producers or ("?",))[0]
            raise LandscapeError(
                f"Re-Basin permutes units, so the models need equal widths: layer '{layer}' has "
                f"{g.size} units in one model and {h.size} in the other (use `align` ot)"
            )
        if not h.fixed:
            movable.append(gid)
    return movable


def _unit_rows(
    value: torch.Tensor, binding: Binding, graph: AlignmentGraph, gid: int
) -> torch.Tensor | None:
    """Return the slices of `value` along the axis that belong to group `gid`, one row per unit."""
    v = value.movedim(binding.axis, 0)
    rows = []
    for seg, off, length in graph.spans(binding.segments):
        if seg.group == gid:
            n = graph.groups[gid].size
            chunk = v[off : off + length].reshape(seg.outer, n, seg.inner, -1).transpose(0, 1)
            rows.append(chunk.reshape(n, -1))
    return torch.cat(rows, 1) if rows else None


def weight_matching(
    state: dict[str, torch.Tensor],
    anchor_state: dict[str, torch.Tensor],
    graph: AlignmentGraph,
    anchor_graph: AlignmentGraph,
    names: Collection[str],
    *,
    seed: int = 0,
    max_sweeps: int = MAX_SWEEPS,
) -> tuple[dict[int, Map], int]:
    """Permutations of the model's units that match its parameters `names` to the anchor's.

    Weight matching (the module docstring): coordinate descent over the groups, one linear
    assignment per group and visit, until a sweep changes nothing.

    Args:
        state: the model's state dict.
        anchor_state: the anchor's state dict.
        graph: the model's alignment graph.
        anchor_graph: the anchor's (same structure, equal widths).
        names: the state keys that enter the objective (the parameters; buffers are moved but not
            matched).
        seed: the random order in which each sweep visits the groups.
        max_sweeps: the most sweeps over all groups.

    Returns:
        One permutation `Map` per movable group, and the number of sweeps (the last changed nothing,
        unless `max_sweeps` stopped the descent first).

    Examples:
        A permuted copy's hidden units are put back in the anchor's order:

        >>> import torch
        >>> from torch import nn
        >>> from fusion.graph import build_graph
        >>> _ = torch.manual_seed(0)
        >>> anchor = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> order = torch.tensor([2, 0, 3, 1])
        >>> a = {k: v.detach() for k, v in anchor.state_dict().items()}
        >>> model = {"0.weight": a["0.weight"][order], "0.bias": a["0.bias"][order],
        ...          "2.weight": a["2.weight"][:, order], "2.bias": a["2.bias"]}
        >>> graph = build_graph(anchor, torch.zeros(2, 3))
        >>> maps, sweeps = weight_matching(model, a, graph, graph, set(a))
        >>> maps[1].index.tolist(), sweeps
        ([1, 3, 0, 2], 2)
    """
    movable = check_widths(graph, anchor_graph)
    sizes = [g.size for g in graph.groups]
    device = next(iter(anchor_state.values())).device
    bindings = [b for b in graph.bindings if b.name in names]
    per_param: dict[str, list[Binding]] = {}
    for b in bindings:
        per_param.setdefault(b.name, []).append(b)
    touching = {
        gid: [b for b in bindings if any(s.group == gid for s in b.segments)] for gid in movable
    }
    index = {gid: torch.arange(sizes[gid], device=device) for gid in movable}
    maps = {gid: Map.from_index(index[gid], device) for gid in movable}

    def score(gid: int) -> np.ndarray:
        s = torch.zeros(sizes[gid], sizes[gid], dtype=torch.float64, device=device)
        for b in touching[gid]:
            w = state[b.name]
            for other in per_param[b.name]:
                if other.axis != b.axis:
                    w = move_axis(w, other.axis, other.segments, other.role, maps, sizes)
            a_rows = _unit_rows(w, b, graph, gid)
            b_rows = _unit_rows(anchor_state[b.name], b, anchor_graph, gid)
            s += (a_rows @ b_rows.to(a_rows.dtype).T).double()
        return s.cpu().numpy()

    rng = np.random.default_rng(seed)
    sweeps, changed = 0, True
    while changed and sweeps < max_sweeps:
        sweeps += 1
        changed = False
        for gid in rng.permutation(movable):
            s = score(int(gid))
            new = assignment(s, maximize=True)
            columns = np.arange(len(new))
            old = index[gid].cpu().numpy()
            gain = s[new, columns].sum() - s[old, columns].sum()
            if gain > 1e-12 * max(1.0, abs(s[old, columns].sum())):
                index[gid] = torch.as_tensor(new, device=device)
                maps[gid] = Map.from_index(new, device)
                changed = True
    return maps, sweeps


def activation_matching(
    moments: dict[int, Moments],
    graph: AlignmentGraph,
    anchor_graph: AlignmentGraph,
    device: torch.device | str = "cpu",
) -> dict[int, Map]:
    """Per movable group, the permutation maximising the summed correlation of the activations.

    The model's activations are correlated with the anchor's (Pearson, `Moments.correlation`); one
    linear assignment per group with readable activations.

    Args:
        moments: per group, the statistics of both models' activations
            (`fusion.metrics.activation_moments`).
        graph: the model's alignment graph.
        anchor_graph: the anchor's (same structure, equal widths).
        device: where the maps live.

    Returns:
        One permutation `Map` per group in `moments` that moves.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from fusion.graph import build_graph
        >>> from fusion.metrics import activation_moments
        >>> _ = torch.manual_seed(0)
        >>> anchor = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> order = torch.tensor([2, 0, 3, 1])
        >>> with torch.no_grad():
        ...     _ = model[0].weight.copy_(anchor[0].weight[order])
        ...     _ = model[0].bias.copy_(anchor[0].bias[order])
        >>> x = torch.randn(32, 3)
        >>> graph = build_graph(anchor, x[:2])
        >>> moments = activation_moments([model], anchor, [graph], graph, x)[0]
        >>> activation_matching(moments, graph, graph)[1].index.tolist()
        [1, 3, 0, 2]
    """
    movable = set(check_widths(graph, anchor_graph))
    return {
        gid: Map.from_index(assignment(mom.correlation(), maximize=True), device)
        for gid, mom in moments.items()
        if gid in movable
    }
