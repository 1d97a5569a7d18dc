"""`comfyfixer verify`: check every download recorded in `output/downloaded_models.json` again.

Read-only: a file that no longer passes is reported (exit 1), never moved or deleted, so the user
decides; deleting it and running `comfyfixer run` again fetches a fresh copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from comfyfixer.cli.console import notice, print_json, stderr_console, stdout_console
from comfyfixer.cli.render import short_path
from comfyfixer.config import pickle_allowed
from comfyfixer.models import FileChecks
from comfyfixer.state.store import DOWNLOADED_FILE, DownloadedModels
from comfyfixer.verify import verify_download


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)


def verify(
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="The output folder holding downloaded_models.json.")
    ] = Path("output"),
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Re-verify recorded downloads (size, sha256, format, pickle safety). Exit 1 if any fails."""
    store = DownloadedModels(output_dir)
    if not store.path.is_file():
        if json_output:
            print_json({"schema": 1, "models": [], "counts": {"ok": 0, "failed": 0}})
        else:
            notice(f"Nothing to verify: {output_dir / DOWNLOADED_FILE} does not exist yet.")
        return
    records = store.load()
    for warning in store.warnings:
        notice(warning, level="warning")
    allow_pickle = pickle_allowed(os.environ)
    reports: list[FileChecks] = []
    quiet = json_output or not stderr_console().is_terminal
    for i, record in enumerate(records, 1):
        if not quiet:
            stderr_console().print(f"[{i}/{len(records)}] checking {record.name}", markup=False)
        reports.append(
            verify_download(
                Path(record.path),
                name=record.name,
                directory=record.directory,
                expected_size=record.size,
                expected_sha256=record.sha256,
                allow_pickle=allow_pickle,
                source=record.source,
                url=record.url,
                trust_sidecar=False,  # an explicit re-check reads every byte again (bit rot, edits)
            )
        )
    failed = sum(1 for r in reports if not r.ok)
    if json_output:
        print_json(
            {
                "schema": 1,
                "models": [
                    {
                        "name": r.name,
                        "directory": r.directory,
                        "path": r.path,
                        "ok": r.ok,
                        "reason": r.reason,
                        "size": r.size,
                        "sha256": r.sha256,
                        "checks": r.check_texts(),
                    }
                    for r in reports
                ],
                "counts": {"ok": len(reports) - failed, "failed": failed},
            }
        )
    else:
        stdout_console().print(_table(reports))
        stdout_console().print(f"{len(reports) - failed} ok, {failed} failed")
        if failed:
            notice(
                "Delete a failed file and run `comfyfixer run` again to fetch a fresh copy.", level="warning"
            )
    if failed:
        raise SystemExit(1)  # not typer.Exit: see cli/run.py


def _table(reports: list[FileChecks]) -> Table:
    table = Table(title=f"recorded downloads ({len(reports)})", title_justify="left")
    table.add_column("model", overflow="fold")
    table.add_column("folder")
    table.add_column("result")
    table.add_column("details", overflow="fold")
    for r in reports:
        table.add_row(
            Text(r.name),
            Text(r.directory or "?"),
            Text("ok" if r.ok else "FAILED", style="green" if r.ok else "bold red"),
            Text(r.reason if not r.ok else short_path(r.path)),
        )
    return table
