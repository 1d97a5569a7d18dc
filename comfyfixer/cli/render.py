"""Rich tables for a scan: references grouped by status, the download plan, unreadable files.

Pure functions from data to renderables; the command decides where they are printed. `plan_table`
is shared with `run`, which shows the same plan before asking to proceed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from comfyfixer.models import MissingModel, Reference, WorkflowResult, normalise_name
from comfyfixer.scan import ScanResult

MAX_WORKFLOWS_SHOWN = 3


def short_path(path: str | None) -> str:
    """A path relative to the current folder when it is inside it, else as given."""
    if not path:
        return ""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if rel.startswith("..") else rel


def workflow_list(workflows: Sequence[str], *, limit: int | None = MAX_WORKFLOWS_SHOWN) -> str:
    names = [Path(w).name for w in workflows]
    if limit is None or len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" (+{len(names) - limit} more)"


def _group(refs: Sequence[Reference]) -> list[tuple[Reference, list[str]]]:
    """One row per model (folder + name), with every workflow that names it, in first-seen order."""
    rows: dict[tuple[str | None, str], tuple[Reference, list[str]]] = {}
    for ref in refs:
        key = (ref.directory, normalise_name(ref.name).lower())
        row = rows.setdefault(key, (ref, []))
        if ref.workflow not in row[1]:
            row[1].append(ref.workflow)
    return list(rows.values())


def status_table(
    title: str, refs: Sequence[Reference], *, where: bool = False, status: bool = False
) -> Table:
    """A table of models of one status; `where` adds the path found, `status` the status column."""
    table = Table(title=f"{title} ({len(_group(refs))})", title_justify="left", expand=False)
    table.add_column("model", overflow="fold")
    table.add_column("folder", no_wrap=True)
    if status:
        table.add_column("status")
    if where:
        table.add_column("found at", overflow="fold")
    table.add_column("needed by", overflow="fold")
    for ref, workflows in _group(refs):
        cells = [Text(normalise_name(ref.name)), Text(ref.directory or "?")]
        if status:
            cells.append(Text(ref.status))
        if where:
            cells.append(Text(short_path(ref.local_path)))
        cells.append(Text(workflow_list(workflows)))
        table.add_row(*cells)
    return table


def plan_table(
    missing: Sequence[MissingModel],
    *,
    targets: Sequence[Path | None] | None = None,
    verbose: bool = False,
    title: str = "to download",
) -> Table:
    """The download plan: one row per model; `verbose` lists every workflow and the hints found."""
    table = Table(title=f"{title} ({len(missing)})", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("model", overflow="fold")
    table.add_column("folder", no_wrap=True)
    if targets is not None:
        table.add_column("into", overflow="fold")
    table.add_column("needed by", overflow="fold")
    if verbose:
        table.add_column("hints", overflow="fold")
    for i, model in enumerate(missing, 1):
        folder = model.directory or "? (folder unknown)"
        if model.bypassed_only:
            folder += " (bypassed)"
        cells = [Text(str(i)), Text(model.name), Text(folder)]
        if targets is not None:
            target = targets[i - 1]
            cells.append(Text(short_path(str(target)) if target is not None else ""))
        cells.append(Text(workflow_list(model.workflows, limit=None if verbose else MAX_WORKFLOWS_SHOWN)))
        if verbose:
            hints = [
                f"{h.url or ''}{' sha256:' + h.hash if h.hash else ''} ({h.source})" for h in model.hints
            ]
            cells.append(Text("\n".join(hints) or "none"))
        table.add_row(*cells)
    return table


def unreadable_table(workflows: Sequence[WorkflowResult]) -> Table:
    table = Table(title=f"files that could not be read ({len(workflows)})", title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("reason", overflow="fold")
    for wf in workflows:
        table.add_row(Text(short_path(wf.path)), Text(wf.error or ""))
    return table


def summary(report: ScanResult, plan_path: Path | None = None) -> Text:
    counts = report.counts()
    text = Text()
    text.append(f"{counts['workflows']} workflow files")
    if counts["unreadable"]:
        text.append(f" ({counts['unreadable']} unreadable)", style="yellow")
    text.append(f", {counts['references']} model references: ")
    n = len(report.missing)
    text.append(f"{n} model{'' if n == 1 else 's'} to download", style="bold red" if n else "green")
    if report.comfyui_root is not None:
        text.append(f", {_models(report, 'misplaced')} misplaced, {_models(report, 'present')} present")
    if plan_path is not None:
        text.append(f".\nPlan written to {short_path(str(plan_path))}")
    return text


def _models(report: ScanResult, status: str) -> int:
    return len(_group([r for r in report.references if r.status == status and not r.bypassed]))


def scan_view(report: ScanResult, plan_path: Path | None = None) -> RenderableType:
    """Everything `comfyfixer scan` shows: a table per status, bypassed references, unreadable files."""
    active = [r for r in report.references if not r.bypassed]
    bypassed = [r for r in report.references if r.bypassed]
    parts: list[RenderableType] = []
    if report.missing:
        targets = [report.target_dir(m) for m in report.missing] if report.inventory is not None else None
        title = "missing" if report.inventory is not None else "unknown (no install checked), all planned"
        parts.append(plan_table(report.missing, targets=targets, title=title))
    misplaced = [r for r in active if r.status == "misplaced"]
    if misplaced:
        parts.append(status_table("misplaced: installed elsewhere, move or link it", misplaced, where=True))
    present = [r for r in active if r.status == "present"]
    if present:
        parts.append(status_table("present", present))
    if bypassed:
        title = "on bypassed or muted nodes" + ("" if report.include_bypassed else " (not planned)")
        parts.append(status_table(title, bypassed, status=True))
    if report.text_references:
        title = "named in prompt text or without a file extension (not planned: no exact file name)"
        parts.append(status_table(title, report.text_references, status=True))
    if report.unreadable:
        parts.append(unreadable_table(report.unreadable))
    parts.append(summary(report, plan_path))
    return Group(*parts)


def print_scan(console: Console, report: ScanResult, plan_path: Path | None = None) -> None:
    console.print(scan_view(report, plan_path))
