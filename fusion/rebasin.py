"""Git Re-Basin (Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation
Symmetries", ICLR 2023) on the alignment graph: one permutation per movable unit group, found by
linear assignment.

- Weight matching (their Algorithm 1): maximise `sum over parameters <W_B, P W_A>`, where `P W_A` is
  A's parameter with every unit-indexed axis permuted by its group's permutation. Coordinate
  descent: for one group at a time, with all other permutations held, the objective is linear in
  that group's permutation, `<S, P>` with `S[i, j] = sum over the axes of its units <A's slice of
  unit i, B's slice of unit j>` (A's other axes permuted), so it is one linear assignment. Groups
  are visited in a random order (seeded) each sweep, and sweeps repeat until no group's permutation
  improves the objective.
- Activation matching (their section 3.1): per group, the permutation that maximises the summed
  Pearson correlation between A's and B's pre-activations on the given examples; one assignment per
  group.

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
    """The movable groups, after checking that both models have the same width in each (a
    permutation needs it).
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
    """The slices of `value` along the binding's axis that belong to group `gid`, one row per unit
    (n, -1).
    """
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
    """Permutations of the model's units (`state`, `graph`) that match its parameters `names` to the
    anchor's.

    Args:
        state, anchor_state: the two models' state dicts.
        graph, anchor_graph: their alignment graphs (same structure, equal widths).
        names: the state keys that enter the objective (the parameters; buffers are moved but not
        matched). seed: the random order in which each sweep visits the groups. max_sweeps: the most
        sweeps over all groups.

    Returns:
        One permutation `Map` per movable group, and the number of sweeps (the last changed nothing,
        unless `max_sweeps` stopped the descent first).

    Raises:
        LandscapeError: a group of different widths in the two models.
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
    """Per movable group with readable activations, the permutation maximising the summed
    correlation of the model's pre-activations with the anchor's.

    Args:
        moments: per group, the statistics of both models' pre-activations
        (`fusion.metrics.activation_moments`). graph, anchor_graph: the two models' alignment
        graphs. device: where the maps live.

    Returns:
        One permutation `Map` per group in `moments` that moves.

    Raises:
        LandscapeError: a group of different widths in the two models.
    """
    movable = set(check_widths(graph, anchor_graph))
    return {
        gid: Map.from_index(assignment(mom.correlation(), maximize=True), device)
        for gid, mom in moments.items()
        if gid in movable
    }
