"""Progress bars on stderr with an ETA, shown only on a terminal, on rank 0, and when not quiet."""
from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

from . import dist

T = TypeVar("T")
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence every bar (the CLI's --quiet and --json)."""
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    """Whether bars are drawn now."""
    return not _quiet and dist.is_main() and sys.stderr.isatty()


def bar(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "") -> tqdm:
    """A tqdm bar (a silent one when bars are off)."""
    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, disable=not enabled(), leave=False,
                dynamic_ncols=True)
