"""The typer application: registers each command module and maps errors to exit codes."""

from __future__ import annotations

import sys

import typer

from comfyfixer import __version__
from comfyfixer.cli import errors as cli_errors

app = typer.Typer(
    name="comfyfixer",
    help="Find, download and verify every model file a folder of ComfyUI workflows needs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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


def _register() -> None:
    from comfyfixer.cli import scan as scan_cmd

    app.command("scan")(scan_cmd.scan)
    for module_name in ("run", "doctor", "status", "verify"):
        try:
            module = __import__(f"comfyfixer.cli.{module_name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"comfyfixer.cli.{module_name}":
                raise
            continue
        module.register(app)


def run_app() -> None:
    _register()
    try:
        # standalone_mode=False makes click return the code of `typer.Exit` instead of raising it.
        code = app(standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(cli_errors.report(KeyboardInterrupt()))
    except SystemExit:
        raise
    except BaseException as exc:  # the edge: every error becomes a message and an exit code
        import click

        # Recent typer vendors its own copy of click, whose exceptions are not click's.
        vendored = sys.modules.get("typer._click.exceptions")
        if isinstance(exc, click.exceptions.UsageError) or (
            vendored is not None and isinstance(exc, vendored.UsageError)
        ):
            exc.show()
            sys.exit(cli_errors.EXIT_USAGE)
        if isinstance(exc, click.exceptions.ClickException) or (
            vendored is not None and isinstance(exc, vendored.ClickException)
        ):
            exc.show()
            sys.exit(exc.exit_code)
        if cli_errors.debug_enabled():
            raise
        sys.exit(cli_errors.report(exc))
    sys.exit(code if isinstance(code, int) else 0)
