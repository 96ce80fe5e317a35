"""Progress on stderr, on rank 0, unless quiet: a tqdm bar on a terminal, plain lines elsewhere.

A terminal gets a tqdm bar with an ETA. Without a terminal (a SLURM or CI log, `make demo > log`) a
bar writes a line (stage, done/total, elapsed, ETA) once it has run `INTERVAL` seconds, then at most
every `INTERVAL` seconds across all bars, and a last line when it ends if it wrote one before or is
a `stage` bar: long work is visible, a thousand short inner jobs are not, and a command that fails
fast on bad input writes nothing but its error line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

from . import dist

T = TypeVar("T")
INTERVAL = 5.0  # seconds between two progress lines in a log
_quiet = False
_last_line = [0.0]  # when any bar last wrote a line


def set_quiet(quiet: bool) -> None:
    """Silence every bar and progress line (the CLI's --quiet and --json), or speak again.

    Args:
        quiet: True to silence, False to report progress again.

    Examples:
        >>> set_quiet(True)
        >>> shown()
        False
        >>> set_quiet(False)
    """
    global _quiet
    _quiet = quiet


def shown() -> bool:
    """Whether progress is reported at all now.

    Returns:
        True when not quiet and on rank 0.

    Examples:
        >>> shown()  # one process, not quiet
        True
    """
    return not _quiet and dist.is_main()


def enabled() -> bool:
    """Whether tqdm bars are drawn now.

    Returns:
        True when progress is shown and stderr is a terminal.

    Examples:
        >>> set_quiet(True)
        >>> enabled()
        False
        >>> set_quiet(False)
    """
    return shown() and sys.stderr.isatty()


def bar(
    iterable: Iterable[T] | None = None,
    total: int | None = None,
    desc: str = "",
    stage: bool = False,
) -> Any:
    """A tqdm bar on a terminal, a `LogBar` writing plain lines otherwise, a silent bar when quiet.

    Args:
        iterable: what the bar iterates over, or None for a bar advanced by `update`.
        total: the expected count (default: `len(iterable)` where it has one).
        desc: the stage's name, shown before the counts.
        stage: a step of a pipeline: it always ends with a line in a log.

    Returns:
        A `tqdm` bar or a `LogBar`, both iterable and both with `update`, `set_description`,
        `set_postfix` and `close`.

    Examples:
        >>> set_quiet(True)
        >>> sum(bar(range(4), desc="sum"))
        6
        >>> set_quiet(False)
    """
    if shown() and not sys.stderr.isatty():
        return LogBar(iterable, total, desc, stage)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        file=sys.stderr,
        disable=not enabled(),
        leave=False,
        dynamic_ncols=True,
    )


def _clock(seconds: float) -> str:
    """`seconds` as m:ss, or h:mm:ss from an hour on.

    Returns:
        The clock reading.
    """
    minutes, s = divmod(round(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LogBar:
    """The part of tqdm's interface the code uses, written as plain lines on stderr.

    Iteration, `update`, `set_description`, `set_postfix` and `close`; the lines read `progress:
    <desc>: <done>/<total> (<pct>%), elapsed m:ss, ETA m:ss`.

    Args:
        iterable: what the bar iterates over, or None.
        total: the expected count (default: `len(iterable)` where it has one).
        desc: the stage's name.
        stage: always end with a line (`<done>/<total> done in m:ss`).

    Examples:
        >>> b = LogBar(range(3), None, "train", stage=True)
        >>> list(b), b.n, b.total
        ([0, 1, 2], 3, 3)
        >>> b.closed, b.wrote  # the stage wrote its last line on stderr
        (True, True)
    """

    def __init__(
        self, iterable: Iterable[T] | None, total: int | None, desc: str, stage: bool = False
    ):
        self.iterable, self.desc, self.n, self.stage = iterable, desc, 0, stage
        self.total = total if total is not None or iterable is None else _length(iterable)
        self.start = time.monotonic()
        self.postfix = ""
        self.wrote = self.closed = False

    def __iter__(self) -> Iterator[T]:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        """Count `n` more done; write a line once the bar and the last line are `INTERVAL` s old.

        Args:
            n: how many more items are done.
        """
        self.n += n
        if time.monotonic() - max(_last_line[0], self.start) >= INTERVAL:
            self._line()

    def set_description(self, desc: str) -> None:
        """Name the stage.

        Args:
            desc: the name shown before the counts.
        """
        self.desc = desc

    def set_postfix(self, **values: Any) -> None:
        """Numbers shown after the counts (e.g. val_acc).

        Args:
            **values: name -> value, shown as `name=value`.
        """
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        """End the bar, with a last line if it is a stage or wrote a line before.

        No last line while an exception is on its way out (a failing command's last line is its
        `error:` line). Closing twice writes nothing more.
        """
        if not self.closed:
            self.closed = True
            if (self.stage or self.wrote) and sys.exc_info()[0] is None:
                self._line(final=True)

    def _line(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self.start
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        if final:
            text = f"{count} done in {_clock(elapsed)}"
        else:
            pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
            eta = (
                f", ETA {_clock(elapsed * (self.total - self.n) / self.n)}"
                if self.total and self.n
                else ""
            )
            text = f"{count}{pct}, elapsed {_clock(elapsed)}{eta}"
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"progress: {self.desc}: {text}{extra}", file=sys.stderr, flush=True)
        _last_line[0] = time.monotonic()
        self.wrote = True


def _length(iterable: Iterable[Any]) -> int | None:
    """`len(iterable)`, or None when it has no length.

    Returns:
        The length or None.
    """
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None
