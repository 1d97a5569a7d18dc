"""The command line: the only layer that imports typer and rich and the only one that prints."""

from __future__ import annotations


def main() -> None:
    from comfyfixer.cli.app import run_app

    run_app()
