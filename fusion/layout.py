"""Channel layouts and the unit groups they are made of.

While the graph is read, every tensor's channel axis has a layout: a sequence of segments, each a
run of units of one provisional group (`Seg`). A unit may cover `inner` consecutive elements (a
flatten from (C, H, W) makes each channel a block of H*W inputs) and a run may repeat `outer` times
(channels-last flattens). Operations record constraints between unit ranges: `pair` (these units
move together: residual adds, gates, a parameter used twice), `cut` (a range must move as a block of
its own: GroupNorm groups, channel slices) and `fix` (these units never move: the network input and
output, frozen operations).

`resolve` cuts every group at all the boundaries that reach it through pairs (to a fixed point),
then merges the resulting pieces with a union-find: the final groups, each solved by one transport
problem.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise


@dataclass(frozen=True)
class Seg:
    """`n` units of provisional group `group`, from unit `start`, laid out along an axis.

    Examples:
        Three units of group 0 from unit 2, each a block of 4 elements, the run repeated twice:

        >>> Seg(group=0, start=2, n=3, inner=4, outer=2).length
        24
    """

    group: int
    start: int
    n: int
    inner: int = 1  # consecutive elements per unit
    outer: int = 1  # repetitions of the whole run

    @property
    def length(self) -> int:
        """The number of elements the segment covers along its axis."""
        return self.n * self.inner * self.outer


@dataclass(frozen=True)
class Layout:
    """The units along axis `axis` of a tensor (or of a parameter, for bindings).

    A layout split into heads runs over several axes: `outer_axes` (outermost first, then `axis`),
    its elements in the row-major order of those axes; each segment then lies within one index of
    the outer axes (one head), and permutations move units only within their segment.

    Examples:
        The input of a linear layer after a flatten of (4, 3, 3) feature maps, preceded by 2 units
        of another group:

        >>> layout = Layout(1, (Seg(0, 0, 2), Seg(1, 0, 4, inner=9)))
        >>> layout.length, layout.axes
        (38, (1,))
    """

    axis: int
    segs: tuple[Seg, ...]
    outer_axes: tuple[int, ...] = ()

    @property
    def length(self) -> int:
        """The number of elements the layout covers (the size of its axes together)."""
        return sum(s.length for s in self.segs)

    @property
    def axes(self) -> tuple[int, ...]:
        """Every axis the layout runs over, outermost first."""
        return (*self.outer_axes, self.axis)

    def on(self, axis: int) -> Layout:
        """The same segments along another axis (a parameter's), as a layout of one axis.

        Args:
            axis: the axis the units lie along.

        Returns:
            A layout with this one's segments along `axis` and no outer axes.
        """
        return Layout(axis, self.segs)


def expand(segs: tuple[Seg, ...]) -> list[Seg]:
    """The same elements with every repetition written out (outer == 1).

    Args:
        segs: segments along one axis.

    Returns:
        The segments in element order, each with `outer` 1.

    Examples:
        >>> [(s.n, s.outer) for s in expand((Seg(0, 0, 2, outer=3), Seg(1, 0, 5)))]
        [(2, 1), (2, 1), (2, 1), (5, 1)]
    """
    out = []
    for s in segs:
        out.extend([replace(s, outer=1)] * s.outer if s.outer > 1 else [s])
    return out


@dataclass
class Fix:
    """Units [start, start + n) of provisional group `group` never move, for `reason`.

    Examples:
        >>> Fix(group=2, start=0, n=4, reason="output")
        Fix(group=2, start=0, n=4, reason='output', event=-1)
    """

    group: int
    start: int
    n: int
    reason: str
    # index of the freeze event that fixed it, -1 for the network's input and output
    event: int = -1


class Units:
    """Provisional unit groups and the constraints between them.

    Examples:
        A residual add pairs a layer's 4 units with the stream's; a slice then cuts the stream at
        unit 2, and `resolve` cuts the layer's group there too:

        >>> units = Units()
        >>> stream, layer = units.layout(1, 4), units.layout(1, 4)
        >>> units.unify(stream, layer)
        True
        >>> units.cut_at(stream, [2])
        True
        >>> resolve(units, []).sizes
        [2, 2]
    """

    def __init__(self) -> None:
        self.size: list[int] = []
        self.cuts: list[set[int]] = []
        self.pairs: list[tuple[int, int, int, int, int]] = []
        self.fixes: list[Fix] = []
        # groups fixed from birth (the input): their tensors need no analysis
        self.constant: set[int] = set()

    def new(self, n: int, fixed: str | None = None) -> int:
        """A new provisional group of `n` units.

        Args:
            n: its number of units.
            fixed: why it never moves (it is then fixed from birth, like the network input), or
                None for a group that may move.

        Returns:
            The group's index.
        """
        self.size.append(n)
        self.cuts.append(set())
        g = len(self.size) - 1
        if fixed is not None:
            self.constant.add(g)
            self.fixes.append(Fix(g, 0, n, fixed))
        return g

    def layout(self, axis: int, n: int, fixed: str | None = None) -> Layout:
        """A layout of one new group of `n` units (`new`) along `axis`.

        Args:
            axis: the axis the units lie along.
            n: the number of units.
            fixed: why the group never moves, or None (see `new`).

        Returns:
            The layout of the new group, all its units in order.
        """
        return Layout(axis, (Seg(self.new(n, fixed), 0, n),))

    def known_fixed(self, layout: Layout) -> bool:
        """Whether every segment of `layout` is of a group fixed from birth (nothing to analyse).

        Args:
            layout: a layout of this object's groups.

        Returns:
            True if no unit of `layout` can move.
        """
        return all(s.group in self.constant for s in layout.segs)

    def fix(self, layout: Layout, reason: str, event: int = -1) -> None:
        """Record that the units of `layout` never move.

        Args:
            layout: the units to fix.
            reason: why, as `Group.reason` says it.
            event: the index of the freeze event that fixed them, -1 for the network's input and
                output (nothing to warn about).
        """
        for s in layout.segs:
            self.fixes.append(Fix(s.group, s.start, s.n, reason, event))

    def unify(self, a: Layout, b: Layout) -> bool:
        """Pair the units of two layouts element by element: they move together.

        Args:
            a: one layout.
            b: another layout of as many elements.

        Returns:
            False (and nothing paired) if the lengths or the unit blocks of the two differ, else
            True.
        """
        if a.length != b.length:
            return False
        sa, sb = expand(a.segs), expand(b.segs)
        pairs, i, j, oa, ob = [], 0, 0, 0, 0
        while i < len(sa) and j < len(sb):
            s, t = sa[i], sb[j]
            if s.inner != t.inner or oa % s.inner or ob % t.inner:
                return False
            ua, ub = oa // s.inner, ob // t.inner
            k = min(s.n - ua, t.n - ub)
            pairs.append((s.group, s.start + ua, t.group, t.start + ub, k))
            oa, ob = oa + k * s.inner, ob + k * t.inner
            if oa == s.length:
                i, oa = i + 1, 0
            if ob == t.length:
                j, ob = j + 1, 0
        self.pairs.extend(p for p in pairs if p[:2] != p[2:4])
        return True

    def cut_segments(self, layout: Layout) -> None:
        """Cut every group at the ends of its segments in `layout` (units never cross them).

        Args:
            layout: the layout whose segments must each move as a block of their own.
        """
        for s in layout.segs:
            self.cuts[s.group] |= {s.start, s.start + s.n}

    def cut_at(self, layout: Layout, positions: list[int]) -> bool:
        """Cut the groups of `layout` at element positions (each must fall on a unit boundary).

        Args:
            layout: the layout the positions index.
            positions: element offsets along the layout's axis.

        Returns:
            False if a position falls inside a unit's block or a repeated run (the cuts before it
            are kept), else True.
        """
        for pos in positions:
            off = 0
            for s in layout.segs:
                if off < pos < off + s.length:
                    if s.outer != 1 or (pos - off) % s.inner:
                        return False
                    self.cuts[s.group].add(s.start + (pos - off) // s.inner)
                    break
                off += s.length
        return True

    def slice(self, layout: Layout, lo: int, hi: int) -> Layout | None:
        """The sub-layout of elements [lo, hi), or None if it does not fall on unit boundaries.

        Args:
            layout: the layout to slice.
            lo: the first element.
            hi: the element after the last.

        Returns:
            The segments (or parts of segments) covering [lo, hi) along the same axis, or None.
        """
        out, off = [], 0
        for s in layout.segs:
            a, b = max(lo, off), min(hi, off + s.length)
            if a < b:
                if a == off and b == off + s.length:
                    out.append(s)
                elif s.outer != 1 or (a - off) % s.inner or (b - off) % s.inner:
                    return None
                else:
                    u0, u1 = (a - off) // s.inner, (b - off) // s.inner
                    out.append(replace(s, start=s.start + u0, n=u1 - u0))
            off += s.length
        return Layout(layout.axis, tuple(out))


@dataclass
class Resolved:
    """The final groups: pieces (group, start, stop) of provisional groups, merged into classes.

    Examples:
        >>> units = Units()
        >>> a, b = units.layout(1, 3), units.layout(1, 3)
        >>> units.unify(a, b)
        True
        >>> res = resolve(units, [])
        >>> res.sizes, res.segments(b.segs[0])
        ([3], [(0, 1, 1)])
    """

    pieces: dict[int, list[tuple[int, int]]]  # provisional group -> its pieces [(start, stop)]
    klass: dict[tuple[int, int], int]  # (provisional group, piece start) -> final group
    sizes: list[int]  # final group sizes
    fixed: list[str]  # final group -> why it is fixed ("" if it moves)
    events: list[set[int]]  # final group -> freeze events that fixed it
    base: list[bool]  # final group -> fixed by the network's input or output

    def segments(self, seg: Seg) -> list[tuple[int, int, int]]:
        """Final (group, inner, outer) runs covering `seg`, in element order.

        Args:
            seg: a segment of provisional units.

        Returns:
            One (final group, elements per unit, repetitions) triple per run.
        """
        runs = [
            (self.klass[(seg.group, a)], seg.inner)
            for a, b in self.pieces[seg.group]
            if seg.start <= a and b <= seg.start + seg.n
        ]
        if len(runs) == 1:
            return [(runs[0][0], seg.inner, seg.outer)]
        return [(k, inner, 1) for k, inner in runs] * seg.outer


def resolve(units: Units, referenced: list[Seg]) -> Resolved:
    """Cut provisional groups at every boundary that reaches them, then merge paired pieces.

    Cuts travel along pairs until nothing changes; a union-find then merges the paired pieces into
    the final groups, numbered in the order of their first piece.

    Args:
        units: the provisional groups and their constraints.
        referenced: segments that something (a binding, a layer, a feature) refers to: each must
            be whole pieces.

    Returns:
        The final groups, their sizes, and why each is fixed.

    Examples:
        A group of 4 units whose first unit is fixed becomes two groups:

        >>> units = Units()
        >>> units.fix(Layout(0, (Seg(units.new(4), 0, 1),)), "output")
        >>> res = resolve(units, [])
        >>> res.sizes, res.fixed
        ([1, 3], ['output', ''])
    """
    cuts = [set(c) | {0, n} for c, n in zip(units.cuts, units.size)]
    for s in referenced:
        cuts[s.group] |= {s.start, s.start + s.n}
    for f in units.fixes:
        cuts[f.group] |= {f.start, f.start + f.n}
    for g1, s1, g2, s2, k in units.pairs:
        cuts[g1] |= {s1, s1 + k}
        cuts[g2] |= {s2, s2 + k}
    changed = True
    while changed:
        changed = False
        for g1, s1, g2, s2, k in units.pairs:
            for ga, sa, gb, sb in ((g1, s1, g2, s2), (g2, s2, g1, s1)):
                new = {sb + c - sa for c in cuts[ga] if sa < c < sa + k} - cuts[gb]
                if new:
                    cuts[gb] |= new
                    changed = True
    pieces, index = {}, {}
    for g, cs in enumerate(cuts):
        bounds = sorted(cs)
        pieces[g] = list(pairwise(bounds))
        for a, _ in pieces[g]:
            index[(g, a)] = len(index)
    parent = list(range(len(index)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for g1, s1, g2, s2, k in units.pairs:
        for a, _ in pieces[g1]:
            if s1 <= a < s1 + k:
                parent[find(index[(g2, s2 + a - s1)])] = find(index[(g1, a)])
    order: dict[int, int] = {}
    klass, sizes = {}, []
    for g in range(len(cuts)):
        for a, b in pieces[g]:
            root = find(index[(g, a)])
            if root not in order:
                order[root] = len(order)
                sizes.append(b - a)
            klass[(g, a)] = order[root]
    fixed, events, base = [""] * len(sizes), [set() for _ in sizes], [False] * len(sizes)
    for f in units.fixes:
        for a, _ in pieces[f.group]:
            if f.start <= a < f.start + f.n:
                k = klass[(f.group, a)]
                if f.event >= 0:
                    events[k].add(f.event)
                elif not base[k]:
                    base[k], fixed[k] = True, f.reason
                if not fixed[k]:
                    fixed[k] = f.reason
    return Resolved(pieces, klass, sizes, fixed, events, base)
