"""The command line: the only layer that imports typer and rich and the only one that prints."""

from __future__ import annotations

import sys


def interrupted_early() -> None:
    """Ctrl-C before a command got going (still loading, parsing): exit 130 quietly; `run --json` still
    prints its one JSON document, an interrupted run with no models."""
    try:
        if len(sys.argv) > 1 and sys.argv[1] == "run" and "--json" in sys.argv:
            import json

            from comfyfixer.loop.result import run_json

            sys.stdout.write(json.dumps(run_json([], [], interrupted=True)) + "\n")
            sys.stdout.flush()
        sys.stderr.write("Interrupted.\n")
    except BaseException:  # a second Ctrl-C while writing: still no traceback
        pass
    sys.exit(130)


def main() -> None:
    try:
        from comfyfixer.cli.app import run_app

        run_app()
    except KeyboardInterrupt:  # one that got past run_app's own handling (before or after it)
        interrupted_early()
