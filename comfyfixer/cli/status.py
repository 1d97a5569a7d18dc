"""`comfyfixer status`: the live download status from `output/status.json`, stale entries marked.

An entry is stale when it still says queued/searching/downloading/verifying but the run that owned
it (or its download script) is gone, e.g. after a crash or a reboot; running `comfyfixer run` again
resumes those downloads from their `.part` files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from comfyfixer.cli.console import notice, print_json, stdout_console
from comfyfixer.cli.progress import human_bytes, human_seconds
from comfyfixer.state.store import STATUS_FILE, StatusEntry, StatusFile

_STYLE = {"done": "green", "failed": "red", "stale": "yellow", "interrupted": "yellow", "downloading": "cyan"}


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def status(
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="The output folder of the run to look at.")
    ] = Path("output"),
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Show what the current (or last) run is doing: state, bytes, speed and ETA per model."""
    if not (output_dir / STATUS_FILE).is_file():
        if json_output:
            print_json({"schema": 1, "models": [], "stale": 0})
        else:
            notice(f"No run recorded yet: {output_dir / STATUS_FILE} does not exist.")
        return
    store = StatusFile(output_dir)
    entries = store.read()
    for warning in store.warnings:
        notice(warning, level="warning")
    stale = sum(1 for e in entries if e.state == "stale")
    if json_output:
        print_json({"schema": 1, "models": [e.to_json() for e in entries], "stale": stale})
        return
    console = stdout_console()
    console.print(_table(entries))
    if stale:
        notice(
            f"{stale} entr{'y is' if stale == 1 else 'ies are'} stale: the run that owned them is gone. "
            "Run the same `comfyfixer run` command again to resume from the partial files.",
            level="warning",
        )


def _table(entries: list[StatusEntry]) -> Table:
    table = Table(title=f"status ({len(entries)})", title_justify="left")
    for column in ("model", "folder", "state", "progress", "speed", "ETA", "pid", "updated"):
        table.add_column(column, overflow="fold")
    for e in entries:
        progress = (
            human_bytes(e.bytes) if e.total is None else f"{human_bytes(e.bytes)} / {human_bytes(e.total)}"
        )
        if e.total:
            progress += f" ({100 * e.bytes / e.total:.0f}%)"
        active = e.state == "downloading"
        table.add_row(
            Text(e.name),
            Text(e.directory or "?"),
            Text(e.state, style=_STYLE.get(e.state, "")),
            Text(progress if e.bytes or e.total else ""),
            Text(f"{human_bytes(e.speed)}/s" if active else ""),
            Text(human_seconds(e.eta) if active else ""),
            Text(str(e.pid) if e.pid and active else ""),
            Text(e.updated_at),
        )
    return table
