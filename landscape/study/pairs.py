"""The pairs of a batch-size study, read from its `[pairs]` section.

A parent is a batch size and (init seed, data seed); a pair is two parents, A aligned to B.
Same-init and different-init pairs are formed at every batch size of `[train]`; mixed pairs take A
and B from different batch sizes, with the same initialisation when their init seeds agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import LandscapeError
from .sections import PairsSection


@dataclass(frozen=True)
class Parent:
    """A parent model: its batch size and (init seed, data seed) before the replicate shift.

    Examples:
        >>> Parent(32, 42, 43).data_seed
        43
    """

    batch_size: int
    init_seed: int
    data_seed: int


@dataclass(frozen=True)
class PairSpec:
    """A pair of parents, A aligned to B.

    Examples:
        >>> pair = PairSpec(Parent(32, 42, 42), Parent(512, 43, 42))
        >>> pair.init, pair.batches, pair.name
        ('diff', 'mixed', 'diff-bs32-bs512')
    """

    a: Parent
    b: Parent

    @property
    def init(self) -> str:
        """`same` when A and B share the initial weights (their init seeds agree), else `diff`."""
        return "same" if self.a.init_seed == self.b.init_seed else "diff"

    @property
    def batches(self) -> str:
        """`corresponding` when A and B were trained with the same batch size, else `mixed`."""
        return "corresponding" if self.a.batch_size == self.b.batch_size else "mixed"

    @property
    def name(self) -> str:
        """The pair's name: `diff-bs32`, or `same-bs32-bs512` for mixed batch sizes."""
        sizes = (
            f"bs{self.a.batch_size}"
            if self.batches == "corresponding"
            else f"bs{self.a.batch_size}-bs{self.b.batch_size}"
        )
        return f"{self.init}-{sizes}"


def _parent(value: Any, where: str) -> Parent:
    """A mixed pair's parent from its `[batch size, init seed, data seed]`.

    Returns:
        The parent.

    Raises:
        LandscapeError: `value` is not a list of three integers.
    """
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value)):
        raise LandscapeError(
            f"{where}: a parent is [batch size, init seed, data seed], got {value!r}"
        )
    return Parent(*value)


def read_pairs(raw: PairsSection, batch_sizes: tuple[int, ...], where: str) -> tuple[PairSpec, ...]:
    """The pairs of `[pairs]`: same- and different-init pairs for every batch size, then the mixed.

    Args:
        raw: the `[pairs]` section as read.
        batch_sizes: `[train] batch_sizes`.
        where: the file, for messages.

    Returns:
        The pairs, the mixed ones as listed.

    Raises:
        LandscapeError: for seeds that are not two pairs, init seeds that contradict the pair's
            kind, a malformed mixed pair or one of batch sizes not in `[train]`, or a pair listed
            twice.

    Examples:
        >>> raw = PairsSection(diff_init=((42, 42), (43, 42)), mixed=({"a": [32, 42, 42],
        ...                                                           "b": [512, 43, 42]},))
        >>> [p.name for p in read_pairs(raw, (32, 512), "my.toml")]
        ['diff-bs32', 'diff-bs512', 'diff-bs32-bs512']
    """
    pairs = []
    for key in ("same_init", "diff_init"):
        seeds = getattr(raw, key)
        if seeds is None:
            continue
        if len(seeds) != 2:
            raise LandscapeError(f"{where}: [pairs] {key} is [[init_a, data_a], [init_b, data_b]]")
        (ia, da), (ib, db) = seeds
        if (ia == ib) != (key == "same_init"):
            raise LandscapeError(
                f"{where}: [pairs] {key} needs {'equal' if key == 'same_init' else 'different'} "
                "init seeds for A and B"
            )
        pairs += [PairSpec(Parent(bs, ia, da), Parent(bs, ib, db)) for bs in batch_sizes]
    for i, entry in enumerate(raw.mixed):
        if set(entry) != {"a", "b"}:
            raise LandscapeError(
                f"{where}: [pairs] mixed entries are {{ a = [batch, init seed, data seed], b = "
                "[...] }}"
            )
        pair = PairSpec(
            _parent(entry["a"], f"{where}: mixed pair {i + 1}"),
            _parent(entry["b"], f"{where}: mixed pair {i + 1}"),
        )
        if pair.batches != "mixed" or {pair.a.batch_size, pair.b.batch_size} - set(batch_sizes):
            raise LandscapeError(
                f"{where}: mixed pair {i + 1} needs two different batch sizes of [train] "
                "batch_sizes"
            )
        pairs.append(pair)
    names = [p.name for p in pairs]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise LandscapeError(
            f"{where}: two pairs are both {duplicate!r}; each (init, A batch, B batch) once"
        )
    return tuple(pairs)
