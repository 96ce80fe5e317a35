"""Messages on the command line: every warning one `warning:` line on stderr, the toolkit's own
recorded so that results (JSON, HDF5 attributes, checkpoint meta) carry them; and the one mapping
from the Python parameters that library messages name (in backquotes, `max_hvps`) to the command's
flags (--max-hvps). A module of its own so that the record is the same whether the CLI runs as
`landscape` or `python -m cli.main`."""

from __future__ import annotations

import os
import re
from typing import TextIO

import click

from landscape.errors import LandscapeWarning

_RECORDED: list[str] = []
PARAMETER = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")
# library parameters whose command-line option has another Python name
ALIASES = {"criterion": "loss", "data": "data_spec"}


def flags(command: click.Command | None) -> dict[str, str]:
    """The flag of each of `command`'s options by its Python name (`max_hvps` -> `--max-hvps`)."""
    options = [
        p for p in (command.params if command is not None else ()) if isinstance(p, click.Option)
    ]
    return {p.name: next((o for o in p.opts if o.startswith("--")), p.opts[0]) for p in options}


def for_command_line(message: str, command: click.Command | None) -> str:
    """`message` with every backquoted library parameter spelled as `command`'s flag, or bare where
    the command has no such flag (a study's settings come from its TOML file, not from flags)."""
    known = flags(command)

    def spell(match: re.Match) -> str:
        name = match.group(1)
        return known.get(name) or known.get(ALIASES.get(name, ""), name)

    return PARAMETER.sub(spell, message)


def clear() -> None:
    """Forget the warnings of an earlier command (in-process runs)."""
    _RECORDED.clear()


def recorded_warnings() -> list[str]:
    """The toolkit's `warning:` lines this command printed so far."""
    return list(_RECORDED)


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Print a warning as one `warning:` line on stderr (rank 0 only); record the toolkit's own."""
    text = (str(message).strip().splitlines() or [category.__name__])[0]
    context = click.get_current_context(silent=True)
    text = for_command_line(text, context.command if context is not None else None)
    if issubclass(category, LandscapeWarning):
        _RECORDED.append(text)
    else:
        text = f"{category.__name__}: {text}"
    if os.environ.get("RANK", "0") == "0":
        click.echo(f"warning: {text}", err=True)
