"""Warnings on the command line: every warning one `warning:` line on stderr, the toolkit's own recorded so
that results (JSON, HDF5 attributes, checkpoint meta) carry them. A module of its own so that the record is
the same whether the CLI runs as `landscape` or `python -m cli.main`."""
from __future__ import annotations

import os
from typing import TextIO

import click

from landscape.errors import LandscapeWarning

_RECORDED: list[str] = []


def clear() -> None:
    """Forget the warnings of an earlier command (in-process runs)."""
    _RECORDED.clear()


def recorded_warnings() -> list[str]:
    """The toolkit's `warning:` lines this command printed so far."""
    return list(_RECORDED)


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    """Print a warning as one `warning:` line on stderr (rank 0 only); record the toolkit's own."""
    text = (str(message).strip().splitlines() or [category.__name__])[0]
    if issubclass(category, LandscapeWarning):
        _RECORDED.append(text)
    else:
        text = f"{category.__name__}: {text}"
    if os.environ.get("RANK", "0") == "0":
        click.echo(f"warning: {text}", err=True)
