"""The end-of-run summary: the models grouped by outcome, each group with what to do about it.

One line per model, never a table: a name is never broken into pieces, on a terminal or in a pipe
(the lines are soft-wrapped by the terminal, not by us). Successes first, then what needs the user,
each group headed by its count and its action; the verification passes in one line unless they
found something; then the totals and where the scripts and the log are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.text import Text

from comfyfixer.cli.render import short_path
from comfyfixer.loop.result import ModelResult, VerificationBatch, counts, url_place, where_found

# Outcome -> (heading, style, what the user should do; "" when nothing).
GROUPS: dict[str, tuple[str, str, str]] = {
    "downloaded": ("downloaded", "green", ""),
    "already_present": ("already installed", "green", ""),
    "planned": (
        "planned (dry run)",
        "cyan",
        "scripts written, none run: run each with `bash <script>`, or run again without --dry-run",
    ),
    "verify_failed": (
        "failed verification",
        "bold red",
        "the file failed its checks and was moved aside (.rejected): do not use it; choose another source",
    ),
    "download_failed": (
        "download failed",
        "red",
        "read the reason, then run the same command again (or the model's script): downloads resume",
    ),
    "source_error": (
        "a source failed",
        "red",
        "check `comfyfixer doctor`; set HF_TOKEN / CIVITAI_API_TOKEN if a login is needed; run again",
    ),
    "ambiguous": (
        "ambiguous",
        "yellow",
        "several different files carry this name: pick one, add its URL to the workflow "
        "(properties.models) or download it by hand",
    ),
    "not_found": (
        "not found",
        "red",
        "no source has this exact file name: find it by hand and put it in the folder shown, "
        "or add its URL to the workflow",
    ),
    "skipped": ("not attempted", "yellow", "see each reason"),
}
MAX_CANDIDATES = 5


def found_on(result: ModelResult) -> str:
    """`found on <source>: <repo or model>` for the file chosen, or "" when nothing was chosen."""
    if not result.source or not result.url:
        return ""
    chosen = next((c for c in result.candidates if c.url == result.url), None)
    return f"found on {result.source}: {where_found(chosen) if chosen else url_place(result.url)}"


def _details(r: ModelResult) -> list[str]:
    """What to say about one model, one item per line (the first goes on the model's line)."""
    where = found_on(r)
    if r.outcome in ("downloaded", "already_present"):
        first = short_path(r.path) or r.reason
        return [first] + ([where] if where else [])
    if r.outcome == "planned":
        return [where or r.reason, f"script: {short_path(r.script)}"] if r.script else [where or r.reason]
    lines = [r.reason or r.outcome.replace("_", " ")]
    if where and r.outcome in ("download_failed", "verify_failed"):
        lines.append(where)
    if r.script and r.outcome != "skipped":
        lines.append(f"script: {short_path(r.script)}")
    if r.outcome == "ambiguous":
        lines += [f"{c.source}: {where_found(c)}" for c in r.candidates[:MAX_CANDIDATES]]
        if len(r.candidates) > MAX_CANDIDATES:
            lines.append(f"(+{len(r.candidates) - MAX_CANDIDATES} more in run --json)")
    return lines


def _verification_lines(batches: Sequence[VerificationBatch]) -> list[Text]:
    if not batches:
        return []
    files = sum(len(b.models) for b in batches)
    llm = sum(1 for b in batches if b.llm)
    how = "LLM + deterministic checks" if llm == len(batches) else ""
    if not how:
        skipped = sorted({b.reason for b in batches if not b.llm and b.reason})
        how = "; ".join(skipped) or "deterministic checks only"
    lines = [Text(f"verification: {files} file(s) in {len(batches)} pass(es): {how}")]
    for batch in batches:
        for verdict in batch.verdicts:
            if verdict.verdict == "suspicious":
                lines.append(Text(f"  suspicious: {verdict.name}: {verdict.reason}", style="yellow"))
    return lines


def summary_lines(
    results: Sequence[ModelResult],
    verifications: Sequence[VerificationBatch],
    *,
    scripts_in_output: int,
    output_dir: Path,
    log_path: Path,
) -> list[Text]:
    """The summary as lines of text (styled; the styles vanish when not on a terminal)."""
    lines: list[Text] = []
    for outcome, (heading, style, action) in GROUPS.items():
        group = [r for r in results if r.outcome == outcome]
        if not group:
            continue
        head = Text(f"{heading} ({len(group)})", style=f"bold {style}")
        if action:
            head.append(f": {action}")
        lines.append(head)
        for r in group:
            first, *rest = _details(r)
            line = Text("  ")
            line.append(r.name, style="bold")
            line.append(f" ({r.directory or 'folder unknown'})")
            if first:
                line.append(f": {first}")
            lines.append(line)
            lines += [Text(f"      {item}") for item in rest]
    lines += _verification_lines(verifications)
    c = counts(list(results))
    parts = [f"{c[k]} {GROUPS[k][0]}" for k in GROUPS if c[k]]
    folder = short_path(str(output_dir)) or str(output_dir)
    lines.append(
        Text(
            f"{', '.join(parts) or 'nothing to do'}; scripts: {c['scripts']} used this run, "
            f"{scripts_in_output} in {folder}/"
        )
    )
    lines.append(Text(f"log: {short_path(str(log_path))}"))
    return lines


def print_summary(console: Console, lines: Sequence[Text]) -> None:
    for line in lines:
        console.print(line, soft_wrap=True)
