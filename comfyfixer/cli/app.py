"""The typer application: registers each command module and maps errors to exit codes."""

from __future__ import annotations

import importlib
import sys

import typer

from comfyfixer import __version__
from comfyfixer.cli import errors as cli_errors
from comfyfixer.cli import interrupted_early

app = typer.Typer(
    name="comfyfixer",
    help="Find, download and verify every model file a folder of ComfyUI workflows needs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"comfyfixer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Find, download and verify every model file a folder of ComfyUI workflows needs."""


COMMANDS = ("scan", "run", "status", "verify", "doctor")


def _register(argv: list[str]) -> None:
    """Register the command being run, or every command when none is named (help, version).

    Each command module imports what it needs (rich progress, state files, HTTP clients); loading
    only the one asked for keeps `comfyfixer scan` quick to start.
    """
    named = next((arg for arg in argv if not arg.startswith("-")), None)
    for name in (named,) if named in COMMANDS else COMMANDS:
        module = importlib.import_module(f"comfyfixer.cli.{name}")
        if name == "scan":
            app.command("scan")(module.scan)
        else:
            module.register(app)


def run_app() -> None:
    import os

    from comfyfixer.config import malformed_tokens

    cli_errors.install_redacting_hooks()
    bad = malformed_tokens(os.environ)
    if bad:  # before anything could put it in a header, a log or a traceback; the value is never shown
        sys.exit(
            cli_errors.print_error(
                cli_errors.UsageError(
                    f"{', '.join(bad)} contains a control character (a newline or tab pasted with it?)",
                    next_step="Set the variable again to the token alone, on one line.",
                )
            )
        )
    try:
        _register(sys.argv[1:])
    except KeyboardInterrupt:
        interrupted_early()
    try:
        # standalone_mode=False makes click return the code of `typer.Exit` instead of raising it.
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        interrupted_early()
    except SystemExit:
        raise
    except BaseException as exc:  # the edge: every error becomes a message and an exit code
        import click

        if isinstance(exc, click.exceptions.UsageError):
            exc.show()
            sys.exit(cli_errors.EXIT_USAGE)
        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if cli_errors.debug_enabled():
            cli_errors.print_debug_traceback(exc)
        sys.exit(cli_errors.print_error(exc))
    sys.exit(code if isinstance(code, int) else 0)
