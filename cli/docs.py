"""The generated reference pages: the command line (docs/cli.md) and the Python API (docs/api.md).

docs/cli.md comes from the click commands, docs/api.md from the curated exports' signatures and
docstrings.

Run `python -m cli.docs cli > docs/cli.md` after changing an option and `python -m cli.docs api >
docs/api.md` after changing a public function; `tests/test_docs.py` fails when either page is stale.
The text comes from click's help records and Python's docstrings, so it does not depend on the
terminal's width.
"""

from __future__ import annotations

import importlib
import inspect
import sys

import click

from .main import cli

HEADER = """# Command-line reference

Generated from the commands' own help by `python -m cli.docs cli > docs/cli.md`; do not edit by
hand.
Every command also prints this with `landscape <command> --help`. Bad input ends a command with one
`error: ...` line and exit code 2 ([errors](errors.md)).
"""


def _cell(text: str) -> str:
    """`text` as one Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def command_markdown(name: str, command: click.Command, parent: click.Context) -> str:
    """The reference section of one command.

    Args:
        name: the command's name under `landscape`.
        command: the click command.
        parent: the context of the `landscape` group.

    Returns:
        Markdown: a heading, the usage line, the command's help and a table of its options.
    """
    ctx = click.Context(command, info_name=name, parent=parent)
    usage = " ".join(["landscape", name, *command.collect_usage_pieces(ctx)])
    lines = [
        f"## `landscape {name}`",
        "",
        "```text",
        usage,
        "```",
        "",
        inspect.cleandoc(command.help or ""),
        "",
    ]
    options = [p for p in command.params if isinstance(p, click.Option)]
    records = [r for r in (option.get_help_record(ctx) for option in options) if r is not None]
    if records:
        lines += ["| option | meaning |", "|---|---|"]
        lines += [f"| `{_cell(opts)}` | {_cell(help_text)} |" for opts, help_text in records]
        lines.append("")
    return "\n".join(lines)


def reference() -> str:
    """The whole command-line reference, commands in alphabetical order.

    Returns:
        The Markdown text of docs/cli.md.
    """
    root = click.Context(cli, info_name="landscape")
    sections = [command_markdown(name, cli.commands[name], root) for name in sorted(cli.commands)]
    return "\n".join([HEADER, *sections]).rstrip("\n") + "\n"


API_HEADER = """# Python API

Generated from the signatures and docstrings of the curated exports by
`python -m cli.docs api > docs/api.md`; do not edit by hand. `import landscape` and `import fusion`
load nothing heavy: each name below is imported on first use. Errors are `landscape.LandscapeError`
(a `ValueError`), warnings `landscape.LandscapeWarning` ([errors](errors.md)).
"""


def object_markdown(package: str, name: str) -> str:
    """The reference section of one exported object.

    Args:
        package: `landscape` or `fusion`.
        name: a name in the package's curated exports.

    Returns:
        Markdown: a heading, the signature (classes: their constructor's) and the docstring.
    """
    obj = getattr(importlib.import_module(package), name)
    try:
        signature = f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):  # exception classes and constants have none
        bases = ", ".join(base.__name__ for base in obj.__bases__) if inspect.isclass(obj) else ""
        signature = f"class {name}({bases})" if inspect.isclass(obj) else f"{name} = {obj!r}"
    doc = inspect.getdoc(obj) or ""
    kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "constant"
    lines = [f"### `{package}.{name}`", "", f"*{kind}*", "", "```python", signature, "```", ""]
    return "\n".join(lines + (["```text", doc, "```", ""] if doc else []))


def api_reference() -> str:
    """The whole API page: `landscape`'s exports, then `fusion`'s, each in alphabetical order.

    Returns:
        The Markdown text of docs/api.md.
    """
    sections = [API_HEADER]
    for package in ("landscape", "fusion"):
        sections.append(f"## `{package}`\n")
        sections += [
            object_markdown(package, name) for name in importlib.import_module(package).__all__
        ]
    return "\n".join(sections).rstrip("\n") + "\n"


PAGES = {"cli": reference, "api": api_reference}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PAGES:
        sys.exit(f"usage: python -m cli.docs {{{'|'.join(PAGES)}}} > docs/<page>.md")
    click.echo(PAGES[sys.argv[1]](), nl=False)
