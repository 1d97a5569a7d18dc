"""The scan stage: discover workflow files, parse them, classify each reference, plan what is missing.

`scan()` is what both `comfyfixer scan` and `comfyfixer run` call; `scan_with_settings()` adds what the
commands share (the ComfyUI root from settings, skipping our own output folder, writing the plan file).
Large scans parse in forked helpers (`forked.py`) while this process walks the models tree."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from comfyfixer import folders
from comfyfixer.config import Settings
from comfyfixer.inventory import Inventory
from comfyfixer.models import Reference, WorkflowResult
from comfyfixer.scan.discover import discover
from comfyfixer.scan.documents import write_plan
from comfyfixer.scan.forked import ForkedMap
from comfyfixer.scan.missing import attach_context, plan, planned
from comfyfixer.scan.result import ScanResult
from comfyfixer.workflow import parse_file
from comfyfixer.workflow.collect import infer_folders

log = logging.getLogger(__name__)

# Below this many files a worker pool costs more than it saves.
PARALLEL_MIN_FILES = 64


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_workers(n_files: int, jobs: int | None = None) -> int:
    """How many processes parse a scan of `n_files` (this one included); 1 means this one alone.

    Fork is the only start method cheap enough to win, and it is safe only on Linux and while this
    process runs no other thread (a forked child could inherit a held lock); otherwise parse here.
    """
    if n_files < PARALLEL_MIN_FILES or sys.platform != "linux" or threading.active_count() != 1:
        return 1
    if sys.version_info < (3, 11):  # frozen slotted dataclasses (Hint) only unpickle from 3.11 on
        return 1
    return max(1, min(jobs or _cpus(), n_files // (PARALLEL_MIN_FILES // 2)))


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: parsing makes no cycles, but its passes over the objects
    `json.loads` creates cost about a tenth of the parse. Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_workflow(path: Path) -> WorkflowResult:
    """Parse one file and set aside the references that have no file extension (see WorkflowResult)."""
    result = parse_file(path, stems=True)
    files: list[Reference] = []
    text: list[Reference] = []
    for ref in result.references:
        (files if ref.strategy != "text" and folders.is_model_file(ref.name) else text).append(ref)
    result.references, result.text_references = files, text
    return result


def scan(
    paths: Sequence[Path],
    comfyui: Path | None,
    *,
    include_bypassed: bool = False,
    extra_yaml: Sequence[Path] = (),
    exclude: Sequence[Path] = (),
    jobs: int | None = None,
) -> ScanResult:
    """Parse every workflow under `paths` and classify its references against the install at `comfyui`.

    Without `comfyui` every reference stays `unknown` and all of them are planned. A file that cannot
    be read is recorded with its reason and the scan goes on; a path that does not exist, or a
    ComfyUI folder that cannot be used, raises `InputError`. `jobs` caps the parser processes
    (default: one per CPU, used only for large scans where forking is safe; 1 = in this process).
    """
    files = discover(paths, exclude=exclude)
    workers = parallel_workers(len(files), jobs)
    with _no_gc():
        if workers > 1:
            # Helpers start parsing at once; this process walks the models tree first (a bad --comfyui
            # fails at once), then takes its share of the same queue, so no core waits for another.
            chunk = max(1, min(8, len(files) // (8 * workers)))
            with ForkedMap(parse_workflow, files, workers - 1, chunk) as parser:
                inventory = Inventory.load(comfyui, extra_yaml) if comfyui is not None else None
                workflows = parser.run(then=_classifier(inventory))
        else:
            inventory = Inventory.load(comfyui, extra_yaml) if comfyui is not None else None
            classify = _classifier(inventory)
            workflows = [parse_workflow(path) for path in files]
            if classify is not None:
                for wf in workflows:
                    classify(wf)
        return _report(workflows, comfyui, inventory, include_bypassed)


def _classifier(inventory: Inventory | None) -> Callable[[WorkflowResult], None] | None:
    """What sets the status of every reference of one workflow, when there is an install to check."""
    if inventory is None:
        return None
    classify = inventory.classify

    def classify_workflow(wf: WorkflowResult) -> None:
        for ref in wf.references:
            classify(ref)
        for ref in wf.text_references:
            classify(ref)

    return classify_workflow


def _infer_across(workflows: list[WorkflowResult], inventory: Inventory | None) -> None:
    """A folder-less reference takes the one folder another workflow of the scan loads its file from."""
    unknown = [r for wf in workflows for r in wf.references if r.directory is None]
    if not unknown:
        return
    infer_folders(unknown, (r for wf in workflows for r in wf.references), "another workflow of this scan")
    if inventory is not None:
        for ref in unknown:
            if ref.directory is not None:
                inventory.classify(ref)  # look again, now in the right folder


def _report(
    workflows: list[WorkflowResult], comfyui: Path | None, inventory: Inventory | None, include_bypassed: bool
) -> ScanResult:
    log.info(
        "scanned %d workflow files (%d unreadable), %d references",
        len(workflows),
        sum(1 for wf in workflows if wf.error),
        sum(len(wf.references) for wf in workflows),
    )
    _infer_across(workflows, inventory)
    needed = (r for wf in workflows for r in (*wf.references, *wf.text_references) if planned(r))
    missing = plan(needed, include_bypassed=include_bypassed)
    attach_context(missing, workflows)
    return ScanResult(
        workflows=workflows,
        missing=missing,
        comfyui_root=comfyui,
        inventory=inventory,
        include_bypassed=include_bypassed,
    )


def scan_with_settings(
    paths: Sequence[Path],
    settings: Settings,
    *,
    include_bypassed: bool = False,
    extra_yaml: Sequence[Path] = (),
    write: bool = True,
) -> tuple[ScanResult, Path | None]:
    """What every command does to scan: root from settings, skip our output folder, write the plan file."""
    report = scan(
        paths,
        settings.comfyui_path,
        include_bypassed=include_bypassed,
        extra_yaml=extra_yaml,
        exclude=[settings.output_dir],
    )
    plan_path = write_plan(report, settings.output_dir) if write else None
    return report, plan_path
