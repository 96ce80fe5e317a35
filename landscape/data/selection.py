"""Which training examples a run uses: labels, a seeded fraction, the skill-transfer split.

The skill-transfer split is that of Singh & Jaggi, "Model Fusion via Optimal Transport" (NeurIPS
2020), Section 5.1.

A `Selection` is applied to the training and validation splits after the whole data set has been
read and standardised, so models trained on different selections expect the same inputs (the
statistics are those of the whole training split) and are evaluated on the same, whole test split
(the paper's "global" test set).

The order is: keep `labels` (all when None) and drop `exclude_labels`; of those examples keep a
`fraction` drawn with `seed` (or, with `rest`, the examples that fraction leaves out: the same seed
splits the pool into two disjoint parts); then add every example of `plus_labels`. The
skill-transfer recipe is two selections of the same pool, the labels other than the special one:
model A gets the special label plus a share of the pool, model B the rest of the pool
(`skill_transfer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from ..errors import LandscapeError
from .split import Split

SKILL_PARTS = ("A", "B")


@dataclass(frozen=True)
class Selection:
    """The examples kept of a split (see the module docstring); the default keeps them all.

    Attributes:
        labels: the labels kept (None: all).
        exclude_labels: labels dropped.
        fraction: the share of the remaining examples drawn, in (0, 1].
        seed: the seed of the draw.
        rest: keep the examples the drawn fraction leaves out instead.
        plus_labels: labels whose every example is added at the end.

    Raises:
        LandscapeError: a fraction outside (0, 1], `rest` with the whole fraction, or labels that
            are not class indices.

    Examples:
        >>> Selection().whole, Selection().record()
        (True, {})
        >>> Selection(labels=(0, 1), fraction=0.5).record()["labels"]
        [0, 1]
        >>> Selection(fraction=0)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: fraction must be in (0, 1], got 0
    """

    labels: tuple[int, ...] | None = None
    exclude_labels: tuple[int, ...] = ()
    fraction: float = 1.0
    seed: int = 0
    rest: bool = False
    plus_labels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise LandscapeError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.rest and self.fraction == 1:
            raise LandscapeError(
                "rest (the examples a fraction leaves out) needs a fraction below 1"
            )
        for name in ("labels", "exclude_labels", "plus_labels"):
            values = getattr(self, name) or ()
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
                raise LandscapeError(
                    f"{name} must be class indices (integers >= 0), got {list(values)}"
                )

    @property
    def whole(self) -> bool:
        """Whether every example is kept."""
        return self == Selection()

    def record(self) -> dict:
        """The selection as results and checkpoints record it.

        Returns:
            Every field (labels as lists), or {} when every example is kept.
        """
        if self.whole:
            return {}
        return {
            "labels": None if self.labels is None else list(self.labels),
            "exclude_labels": list(self.exclude_labels),
            "fraction": self.fraction,
            "seed": self.seed,
            "rest": self.rest,
            "plus_labels": list(self.plus_labels),
        }


@dataclass(frozen=True)
class DataSpec:
    """A data set as `load_data` names it and the examples kept of it.

    Attributes:
        source: digits, a .npz path, mnist:DIR, ...; None for the data the checkpoints record (the
            command line's default).
        selection: the training and validation examples kept.

    Examples:
        >>> spec = DataSpec(None, skill_transfer("A"))
        >>> str(spec.with_default("digits")), spec.with_default("digits").selection.fraction
        ('digits', 0.1)
        >>> DataSpec("mnist:/data").with_default("digits").source
        'mnist:/data'
    """

    source: str | None  # None: the data the checkpoints record (the command line's default)
    selection: Selection = Selection()

    def __str__(self) -> str:
        return str(self.source)

    def with_default(self, source: str) -> DataSpec:
        """This spec, with `source` where it names none (the command line's default).

        Args:
            source: the data set to use when the spec names none.

        Returns:
            This spec, or a copy with `source`.
        """
        return self if self.source is not None else replace(self, source=source)


def parse_skill_transfer(text: str, seed: int = 0) -> Selection:
    """`PART[:LABEL[:SHARE]]` (e.g. `A`, `B:4`, `A:6:0.05`) as the selection of `skill_transfer`.

    Args:
        text: the part, optionally the special label and A's share of the other labels.
        seed: the seed of the draw.

    Returns:
        The part's selection.

    Raises:
        LandscapeError: when `text` is not of that form.

    Examples:
        >>> s = parse_skill_transfer("b:6:0.05", seed=1)
        >>> s.exclude_labels, s.fraction, s.seed, s.rest
        ((6,), 0.05, 1, True)
        >>> parse_skill_transfer("A:four")
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: skill transfer: expected PART[:LABEL[:SHARE]] such as ...
    """
    part, *rest = text.split(":")
    try:
        special = int(rest[0]) if rest else 4
        share = float(rest[1]) if len(rest) > 1 else 0.1
    except ValueError:
        special = share = None
    if special is None or len(rest) > 2:
        raise LandscapeError(
            f"skill transfer: expected PART[:LABEL[:SHARE]] such as A:4:0.1, got {text!r}"
        )
    return skill_transfer(part.upper(), special, share, seed)


def skill_transfer(part: str, special: int = 4, share: float = 0.1, seed: int = 0) -> Selection:
    """Model A's or model B's training examples in the skill-transfer split.

    A has every example of the `special` label plus a `share` of the other labels' examples, B the
    other labels' remaining examples (Singh & Jaggi, NeurIPS 2020, Section 5.1).

    Args:
        part: "A" (the specialist) or "B" (the generalist).
        special: the label only A sees (4 in the paper).
        share: A's share of the other labels' examples (0.1 in the paper; B gets 1 - share).
        seed: the seed of the draw; A and B must use the same one for their parts to be disjoint.

    Returns:
        The selection of that part.

    Raises:
        LandscapeError: for an unknown part or a share outside (0, 1).

    Examples:
        >>> a = skill_transfer("A", special=4, share=0.1)
        >>> a.exclude_labels, a.plus_labels, a.rest
        ((4,), (4,), False)
        >>> skill_transfer("B").rest
        True
    """
    if part not in SKILL_PARTS:
        raise LandscapeError(
            f"skill-transfer part must be one of {', '.join(SKILL_PARTS)}, got {part!r}"
        )
    if not 0 < share < 1:
        raise LandscapeError(f"skill-transfer share must be in (0, 1), got {share}")
    if part == "A":
        return Selection(
            exclude_labels=(special,), fraction=share, seed=seed, plus_labels=(special,)
        )
    return Selection(exclude_labels=(special,), fraction=share, seed=seed, rest=True)


def select(split: Split, selection: Selection) -> Split:
    """The examples of `split` that `selection` keeps, in their original order.

    Args:
        split: the examples to choose from.
        selection: what to keep.

    Returns:
        A new split (the same object when every example is kept).

    Raises:
        LandscapeError: when nothing is left.

    Examples:
        >>> import torch
        >>> split = Split(torch.arange(10.0)[:, None], torch.arange(10) % 5)
        >>> select(split, Selection(labels=(2,))).y.tolist()
        [2, 2]
        >>> a = select(split, skill_transfer("A", special=4, share=0.5))
        >>> b = select(split, skill_transfer("B", special=4, share=0.5))
        >>> len(a), len(b)  # A: both 4s and half of the other 8; B: the other half
        (6, 4)
        >>> sorted(a.x.flatten().tolist() + b.x.flatten().tolist()) == list(range(10))
        True
    """
    if selection.whole:
        return split
    y = split.y.cpu()
    pool = (
        torch.ones(len(y), dtype=torch.bool)
        if selection.labels is None
        else _isin(y, selection.labels)
    )
    pool &= ~_isin(y, selection.exclude_labels)
    keep = pool.clone()
    if selection.fraction < 1:
        members = torch.nonzero(pool).flatten()
        order = members[
            torch.randperm(len(members), generator=torch.Generator().manual_seed(selection.seed))
        ]
        drawn = order[: round(len(members) * selection.fraction)]
        keep = pool.clone() if selection.rest else torch.zeros_like(pool)
        keep[drawn] = not selection.rest
    keep |= _isin(y, selection.plus_labels)
    idx = torch.nonzero(keep).flatten()
    if len(idx) == 0:
        raise LandscapeError(f"the data selection {selection.record()} keeps no example")
    idx = idx.to(split.y.device)
    return Split(split.x[idx], split.y[idx])


def _isin(y: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    """Which entries of `y` are among `labels`.

    Returns:
        A boolean mask shaped like `y`.
    """
    return torch.isin(y, torch.tensor(list(labels), dtype=y.dtype))
