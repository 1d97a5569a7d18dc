"""`comfyfixer scan`: parse workflows, check them against the install, write the plan, show the result.

The scan only reports, so it exits 0 even when models are missing; it exits 2 when a path or the
ComfyUI folder cannot be used. Nothing heavy (HTTP, Hugging Face, OpenAI, pydantic) is imported here.
"""

from __future__ import annotations

import atexit
import gc
import os
from pathlib import Path
from typing import Annotated

import typer

from comfyfixer.cli.console import notice, print_json, stdout_console
from comfyfixer.config import Settings
from comfyfixer.scan import ScanResult, scan_json, scan_with_settings

NO_ROOT_NOTICE = (
    "No ComfyUI folder given, so nothing was checked against an install: every model is listed as "
    "unknown and planned. Pass --comfyui DIR (the folder holding models/) or set COMFYUI_PATH."
)


def settings_from_options(comfyui: Path | None, output_dir: Path) -> Settings:
    """Settings from the environment, with the command line taking precedence (shared by commands)."""
    overrides: dict[str, object] = {"output_dir": output_dir}
    if comfyui is not None:
        overrides["comfyui_path"] = comfyui.expanduser()
    return Settings.from_env(os.environ, **overrides)


def report_notices(report: ScanResult) -> None:
    """Say on stderr what the user should know about a scan before reading its result."""
    if report.comfyui_root is None:
        notice(NO_ROOT_NOTICE, level="warning")
    if not report.workflows:
        notice("No workflow files (.json, .png, .webp) were found under the given paths.", level="warning")


def scan(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Workflow files (.json, .png, .webp) or folders to search.",
            show_default=False,
            metavar="PATH",
        ),
    ],
    comfyui: Annotated[
        Path | None,
        typer.Option(
            "--comfyui", help="ComfyUI folder (holds models/); default: $COMFYUI_PATH.", show_default=False
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    include_bypassed: Annotated[
        bool, typer.Option("--include-bypassed", help="Plan models used only by bypassed or muted nodes too.")
    ] = False,
    output_dir: Annotated[
        Path, typer.Option("--output-dir", help="Where missing_models.json is written.")
    ] = Path("output"),
    extra_model_paths: Annotated[
        list[Path] | None,
        typer.Option(
            "--extra-model-paths",
            help="Another extra_model_paths.yaml to read (repeatable), e.g. ComfyUI Desktop's.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """List every model the workflows need and whether it is installed; write output/missing_models.json.

    Exits 0 even when models are missing (the scan only reports); 2 when a path cannot be used.
    """
    # The command makes no reference cycles worth collecting, but the collector's passes over the
    # hundreds of thousands of objects it creates cost 5-10 % of its CPU: pause it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        settings = settings_from_options(comfyui, output_dir)
        report, plan_path = scan_with_settings(
            paths,
            settings,
            include_bypassed=include_bypassed,
            extra_yaml=extra_model_paths or (),
        )
        report_notices(report)
        if json_output:
            print_json(scan_json(report, plan_path=plan_path))
        else:
            from comfyfixer.cli.render import print_scan  # rich tables: only when people read the output

            print_scan(stdout_console(), report, plan_path)
    finally:
        if collecting:
            gc.enable()
    _freeze_at_exit()


def _freeze_at_exit() -> None:
    """At exit the interpreter runs one last collection over every object still alive (typer, click,
    our modules): ~15 ms of a sub-second command, to find nothing; frozen objects are skipped.

    The output is flushed and every file closed before this runs, and logging's own exit hook
    (registered earlier, so run later) still flushes its handlers.
    """
    if not _EXIT_FREEZE:
        atexit.register(gc.freeze)
        _EXIT_FREEZE.append(True)


_EXIT_FREEZE: list[bool] = []  # registered once per process, however often the command runs (tests)
