"""The `landscape` command group and its error handling (one `error:` line, exit code 2) and
warnings (one `warning:` line each, recorded with the result)."""

from __future__ import annotations

import os
import sys
import warnings

import click

from landscape.errors import LandscapeError, LandscapeWarning
from landscape.threads import ENV, set_threads

from . import curvature, fusion, geometry, messages, sharpness, study, train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="CPU threads torch computes with (results depend on it: it is recorded with every "
    "checkpoint and result) [$LANDSCAPE_THREADS, else torch's default].",
)
@click.version_option(package_name="landscape")
@click.pass_context
def cli(ctx: click.Context, debug: bool, threads: int | None) -> None:
    """Fuse neural networks with optimal transport and measure their loss landscapes."""
    ctx.obj = {"debug": debug}
    if threads is not None or os.environ.get(ENV):
        set_threads(threads)


for module in (train, fusion, curvature, sharpness, geometry, study):
    for cmd in module.COMMANDS:
        cli.add_command(cmd)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # a bare `landscape` asks what there is: the help, and success
        click.echo(cli.get_help(click.Context(cli, info_name="landscape")))
        return
    messages.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("always", LandscapeWarning)
        warnings.showwarning = messages.show_warning
        _run(argv, "--debug" in argv)


def _run(argv: list[str], debug: bool) -> None:
    try:
        cli.main(args=argv, prog_name="landscape", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        if debug:
            raise
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except (
        LandscapeError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        FileExistsError,
        PermissionError,
    ) as exc:
        if debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        message = messages.for_command_line(message, _command(argv))
        click.echo(f"error: {message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if debug:
            raise
        click.echo(
            f"error: internal {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            "(rerun with --debug for the traceback)",
            err=True,
        )
        sys.exit(1)


def _command(argv: list[str]) -> click.Command | None:
    """The subcommand `argv` runs (its first word that is not an option), if any."""
    return cli.commands.get(next((a for a in argv if not a.startswith("-")), ""))


if __name__ == "__main__":
    main()
