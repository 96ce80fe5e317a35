"""The CPU threads torch computes with: part of what decides a result.

A sum split over another number of threads rounds differently (the same seeds trained with 1 and
with 2 threads end up to 0.04 apart in some weights). Set by `landscape --threads N` or the
LANDSCAPE_THREADS environment variable, recorded as `threads` in every checkpoint's meta and every
stored result (docs/results.md, "Determinism").
"""

from __future__ import annotations

import os

from .errors import LandscapeError

ENV = "LANDSCAPE_THREADS"


def set_threads(threads: int | None) -> None:
    """Make torch use `threads` intra-op threads.

    Args:
        threads: a positive count, or None: LANDSCAPE_THREADS if it is set, else torch's choice
            is left as it is.

    Raises:
        LandscapeError: a count below 1, or a LANDSCAPE_THREADS that is not a positive integer.

    Examples:
        >>> before = threads()
        >>> set_threads(1)
        >>> threads()
        1
        >>> set_threads(0)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: the thread count must be at least 1, got 0
        >>> set_threads(before)
    """
    if threads is None:
        text = os.environ.get(ENV, "").strip()
        if not text:
            return
        try:
            threads = int(text)
        except ValueError:
            raise LandscapeError(f"{ENV} must be a positive integer, got {text!r}") from None
    if threads < 1:
        raise LandscapeError(f"the thread count must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def threads() -> int:
    """The intra-op threads torch computes with now.

    Returns:
        `torch.get_num_threads()`.

    Examples:
        >>> import torch
        >>> threads() == torch.get_num_threads()
        True
    """
    import torch

    return torch.get_num_threads()
