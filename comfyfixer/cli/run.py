"""`comfyfixer run`: scan, show the plan, ask, then the incremental loop with live progress.

This module only parses options, scans, asks the question, and renders the outcome: the real
collaborators are built (once) and the loop driven by `cli/driver.py`; the loop itself is
`comfyfixer.loop`. Exit codes: 0 all done or nothing missing (also when the user declines or no
terminal can answer), 1 some model failed, 2 usage, 130 interrupted (downloads stopped, `.part`
files kept, state saved).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from comfyfixer.cli.console import notice, print_json, stderr_console, stdout_console
from comfyfixer.cli.driver import drive
from comfyfixer.cli.errors import UsageError
from comfyfixer.cli.render import plan_table, short_path, unreadable_table
from comfyfixer.cli.scan import report_notices, settings_from_options
from comfyfixer.cli.summary import print_summary, summary_lines
from comfyfixer.errors import ComfyFixerError
from comfyfixer.loop.installed import installed_results
from comfyfixer.loop.result import ModelResult, exit_code, run_json
from comfyfixer.models import MissingModel
from comfyfixer.runlog import close_run_log, open_run_log
from comfyfixer.scan import ScanResult, scan_with_settings
from comfyfixer.state.counter import ScriptCounter
from comfyfixer.state.store import DownloadedModels

if TYPE_CHECKING:
    from comfyfixer.config import Settings

NO_ROOT = "run needs your ComfyUI folder to know where the models go"
NO_ROOT_HINT = "Pass --comfyui DIR (the folder holding main.py and models/), or set COMFYUI_PATH."


class SearchMode(str, Enum):
    direct = "direct"
    llm = "llm"


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Workflow files (.json, .png, .webp) or folders to search.", show_default=False),
    ],
    comfyui: Annotated[
        Path | None,
        typer.Option(
            "--comfyui", help="ComfyUI folder (holds models/); default: $COMFYUI_PATH.", show_default=False
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before downloading.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Search and write the scripts, but run none of them.")
    ] = False,
    no_llm: Annotated[
        bool, typer.Option("--no-llm", help="Direct sources only: no LLM search, no LLM verification.")
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=16, help="Downloads running at once.")] = 2,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON report on stdout at the end (progress stays on stderr)."),
    ] = False,
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Scripts, plan and state files.")] = Path(
        "output"
    ),
    log_dir: Annotated[Path, typer.Option("--log-dir", help="Run logs and script logs.")] = Path("log"),
    include_bypassed: Annotated[
        bool,
        typer.Option("--include-bypassed", help="Also fetch models used only by bypassed or muted nodes."),
    ] = False,
    search: Annotated[
        SearchMode,
        typer.Option(
            "--search",
            help="direct: the LLM agent only for what direct sources cannot settle; llm: for every model.",
        ),
    ] = SearchMode.direct,
    extra_model_paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--extra-model-paths",
            help="Another extra_model_paths.yaml to read (repeatable).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Find, download and verify every missing model the workflows need, one script per model."""
    if search is SearchMode.llm and no_llm:
        raise UsageError(
            "--search llm and --no-llm contradict each other", next_step="Pass only one of them."
        )
    settings = replace(settings_from_options(comfyui, output_dir), log_dir=log_dir)
    if settings.comfyui_path is None:
        raise UsageError(NO_ROOT, next_step=NO_ROOT_HINT)
    log_path, handler = open_run_log(settings.log_dir, settings.secrets)
    try:
        scan, _ = scan_with_settings(
            paths, settings, include_bypassed=include_bypassed, extra_yaml=extra_model_paths or ()
        )
        if _check_installed(scan, settings):  # files moved aside are missing now: plan them again
            scan, _ = scan_with_settings(
                paths, settings, include_bypassed=include_bypassed, extra_yaml=extra_model_paths or ()
            )
        report_notices(scan)
        _check_readable(scan)
        code = _run_plan(
            scan,
            settings,
            yes=yes,
            dry_run=dry_run,
            no_llm=no_llm,
            jobs=jobs,
            json_output=json_output,
            search_all=search is SearchMode.llm,
            log_path=log_path,
        )
    except KeyboardInterrupt:
        # Ctrl-C before the download loop (scanning, probing, asking): nothing was started, nothing to stop.
        if json_output:
            print_json(run_json([], [], interrupted=True, dry_run=dry_run))
        notice("Interrupted before any download started. Run the same command again.", level="warning")
        close_run_log(handler)
        # Straight out: a library interrupted mid-call (a thread join, an import) may not shut down
        # cleanly, and Python then dies of the signal (-2) instead of exiting 130.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    finally:
        close_run_log(handler)
    # SystemExit, not typer.Exit: with standalone_mode=False click turns Exit into a return value.
    raise SystemExit(code)


def _check_readable(report: ScanResult) -> None:
    """List the workflow files that could not be read (as `scan` does); none readable is a usage error."""
    unreadable = report.unreadable
    if unreadable:
        stderr_console().print(unreadable_table(unreadable))
    if not report.workflows or len(unreadable) == len(report.workflows):
        what = (
            f"none of the {len(unreadable)} workflow files could be read"
            if unreadable
            else "no workflow files"
        )
        raise UsageError(
            f"nothing to run: {what}",
            next_step="Point run at ComfyUI workflows (.json, or .png/.webp with the workflow embedded).",
        )


def _check_installed(scan: ScanResult, settings: Settings) -> int:
    """Check the files earlier runs installed in this ComfyUI and say what was wrong; returns how many."""
    from comfyfixer.state.store import DownloadedModels
    from comfyfixer.verify import check_installed

    if scan.inventory is None:
        return 0
    records = DownloadedModels(settings.output_dir).load()
    damaged = check_installed(records, scan.inventory.layout.models_roots)
    for record, what in damaged:
        notice(
            f"{short_path(record.path)} {what}; it is fetched again if a workflow needs it.", level="warning"
        )
    return len(damaged)


def _run_plan(
    scan: ScanResult,
    settings: Settings,
    *,
    yes: bool,
    dry_run: bool,
    no_llm: bool,
    jobs: int,
    json_output: bool,
    search_all: bool,
    log_path: Path,
) -> int:
    models = scan.missing
    installed = _installed(scan, settings)
    if not models:
        if json_output:
            print_json(run_json(installed, [], dry_run=dry_run, scripts_in_output=_scripts(settings)))
        else:
            stdout_console().print("Nothing is missing: every model the workflows need is installed.")
        return 0
    if not yes and not _confirmed(scan, json_output):
        if json_output:
            skipped = [_not_confirmed(m) for m in models]
            report_json = run_json(
                skipped + installed, [], dry_run=dry_run, scripts_in_output=_scripts(settings)
            )
            print_json(report_json)
        return 0
    result = drive(
        scan,
        settings,
        dry_run=dry_run,
        no_llm=no_llm,
        jobs=jobs,
        json_output=json_output,
        search_all=search_all,
    )
    # The exit code is about what this run fetched: a misplaced copy is reported, not a failure.
    code = exit_code(result.results, interrupted=result.interrupted)
    result.results.extend(installed)
    for warning in result.notices:
        notice(warning, level="warning")
    if json_output:
        print_json(
            run_json(
                result.results,
                result.verifications,
                interrupted=result.interrupted,
                dry_run=dry_run,
                scripts_in_output=_scripts(settings),
            )
        )
    else:
        lines = summary_lines(
            result.results,
            result.verifications,
            scripts_in_output=_scripts(settings),
            output_dir=settings.output_dir,
            log_path=log_path,
        )
        print_summary(stdout_console(), lines)
    if result.interrupted:
        notice(
            "Interrupted: downloads stopped, partial files kept, state saved. "
            "Run the same command again to resume.",
            level="warning",
        )
    return code


# ---------------------------------------------------------------- the question


def _confirmed(scan: ScanResult, json_output: bool) -> bool:
    console = stderr_console() if json_output else stdout_console()
    targets = [scan.target_dir(m) for m in scan.missing]
    console.print(plan_table(scan.missing, targets=targets))
    if not sys.stdin.isatty():
        notice("Not asking: no terminal to answer on. Run again with --yes to download these models.")
        return False
    while True:
        try:
            answer = console.input("Proceed? [y/n/v] ", markup=False).strip().lower()
        except EOFError:
            answer = "n"
        if answer in ("y", "yes"):
            return True
        if answer in ("n", "no", "q"):
            notice("Nothing downloaded.")
            return False
        if answer in ("v", "view"):
            console.print(plan_table(scan.missing, targets=targets, verbose=True))


def _installed(scan: ScanResult, settings: Settings) -> list[ModelResult]:
    """The needed models the scan found on disk, with what `downloaded_models.json` knows of them."""
    try:
        records = DownloadedModels(settings.output_dir).load()
    except ComfyFixerError as exc:  # the loop reports a damaged state file; here it only costs the sha256
        notice(f"{exc.message}: installed models are listed without their recorded sha256", level="warning")
        records = []
    refs = [*scan.references, *scan.text_references]
    return installed_results(refs, records, include_bypassed=scan.include_bypassed)


def _scripts(settings: Settings) -> int:
    return len(ScriptCounter(settings.output_dir).scripts())


def _not_confirmed(model: MissingModel) -> ModelResult:
    return ModelResult.of(model, "skipped", "not confirmed: run again with --yes")
