"""The CLI's output channels: stdout for results (tables or one JSON document), stderr for everything else.

Consoles are created on first use and write to whatever `sys.stdout` / `sys.stderr` are at that moment,
so test runners that swap the streams see the output. Markup is off: file and model names often hold
square brackets, which rich would otherwise read as style tags.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_consoles: dict[str, Console] = {}
PIPED_WIDTH = 1000


def _console(stream: str) -> Console:
    console = _consoles.get(stream)
    if console is None:
        # Imported here so `--json` runs, which print no table, do not pay for rich at start-up.
        from rich.console import Console

        console = Console(stderr=stream == "stderr", markup=False, highlight=False, soft_wrap=False)
        if not console.is_terminal:
            # Piped or redirected: nobody's window to fit, and folding at 80 columns cut names into
            # pieces that grep and copy-paste cannot find. Tables take the width their content needs.
            console.width = PIPED_WIDTH
        _consoles[stream] = console
    return console


def stdout_console() -> Console:
    """Where results go (tables, summaries); nothing else may write to stdout in `--json` mode."""
    return _console("stdout")


def stderr_console() -> Console:
    """Where progress bars, notices and warnings go."""
    return _console("stderr")


def print_json(payload: Any) -> None:
    """Print exactly one JSON document to stdout, plain (no colour, no wrapping) for machines.

    Compact on purpose: with `indent` the json module falls back to its pure-Python encoder, which
    made a large scan's output cost as much as parsing its workflows. Pipe through `jq` to read it.
    """
    sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def notice(message: str, *, level: str = "info") -> None:
    """A one-line message for the user on stderr; warnings and errors are coloured."""
    style = {"warning": "yellow", "error": "bold red"}.get(level)
    prefix = {"warning": "warning: ", "error": "error: "}.get(level, "")
    stderr_console().print(prefix + message, style=style, soft_wrap=True)
