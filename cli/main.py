"""The `landscape` command group and its error handling (one `error:` line, exit code 2)."""
from __future__ import annotations

import sys
import warnings

import click

from landscape.errors import LandscapeError

from . import curvature, fusion, geometry, study, train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="landscape")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Fuse neural networks with optimal transport and measure their loss landscapes."""
    ctx.obj = {"debug": debug}


for module in (train, fusion, curvature, geometry, study):
    for cmd in module.COMMANDS:
        cli.add_command(cmd)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings for people: one `warning:` line on stderr (tracebacks and source lines only with --debug)."""
    click.echo(f"warning: {str(message).splitlines()[0]}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _one_line_warning
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
    except (LandscapeError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        if debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        click.echo(f"error: {message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if debug:
            raise
        click.echo(f"error: internal {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                   "(rerun with --debug for the traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
