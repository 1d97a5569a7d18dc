"""The scan stage: discover workflow files, parse them, classify each reference, plan what is missing.

`scan()` is what both `comfyfixer scan` and `comfyfixer run` call; `scan_with_settings()` adds what the
commands share (the ComfyUI root from settings, skipping our own output folder, writing the plan file).
The JSON shapes of DESIGN.md (`scan --json`, `output/missing_models.json`) are built here so every
command that shows a scan shows the same thing.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from comfyfixer import folders
from comfyfixer.config import Settings
from comfyfixer.errors import WorkflowPathError
from comfyfixer.inventory import Inventory, iter_tree
from comfyfixer.models import Hint, MissingModel, Reference, WorkflowResult, normalise_name
from comfyfixer.state.atomic import SCHEMA_VERSION, atomic_write_text
from comfyfixer.workflow import parse_file
from comfyfixer.workflow.forked import ForkedMap

log = logging.getLogger(__name__)

WORKFLOW_SUFFIXES = (".json", ".png", ".webp")
PLAN_FILE = "missing_models.json"


@dataclass(slots=True)
class ScanReport:
    """Every workflow read, every reference classified, and the de-duplicated list of models to fetch."""

    workflows: list[WorkflowResult]
    missing: list[MissingModel]
    comfyui_root: Path | None = None
    inventory: Inventory | None = None
    include_bypassed: bool = False
    generated_at: float = field(default_factory=time.time)

    @property
    def references(self) -> list[Reference]:
        return [ref for wf in self.workflows for ref in wf.references]

    @property
    def text_references(self) -> list[Reference]:
        return [ref for wf in self.workflows for ref in wf.text_references]

    @property
    def unreadable(self) -> list[WorkflowResult]:
        return [wf for wf in self.workflows if wf.error]

    def target_dir(self, model: MissingModel) -> Path | None:
        """Where `model` would be downloaded, when the install and its folder are known."""
        if self.inventory is None or model.directory is None:
            return None
        return self.inventory.target_dir(model.directory)

    def counts(self) -> dict[str, int]:
        refs = self.references
        out = {
            "workflows": len(self.workflows),
            "unreadable": len(self.unreadable),
            "references": len(refs),
            "bypassed": sum(1 for r in refs if r.bypassed),
            "text_references": len(self.text_references),
            "missing_models": len(self.missing),
        }
        for status in ("present", "misplaced", "missing", "unknown"):
            out[status] = sum(1 for r in refs if r.status == status)
        return out


# ---------------------------------------------------------------- discovery


def discover(paths: Sequence[Path], *, exclude: Sequence[Path] = ()) -> list[Path]:
    """Workflow files under `paths`: files as given, directories searched recursively.

    In a directory only `.json`, `.png` and `.webp` files count; hidden entries and anything under an
    `exclude` directory (our own output folder) are skipped. A path that does not exist is an error.
    """
    excluded = [os.path.normpath(os.path.abspath(p)) for p in exclude]
    found: dict[str, Path] = {}
    for given in paths:
        if not given.exists():
            raise WorkflowPathError(str(given), "missing")
        if not given.is_dir():
            found.setdefault(os.path.abspath(given), given)
            continue
        if not os.access(given, os.R_OK | os.X_OK):
            raise WorkflowPathError(str(given), "unreadable")
        for path, is_dir in iter_tree(str(given)):
            if is_dir or not path.lower().endswith(WORKFLOW_SUFFIXES):
                continue
            absolute = os.path.abspath(path)
            if any(absolute.startswith(ex + os.sep) for ex in excluded):
                continue
            found.setdefault(absolute, Path(path))
    return sorted(found.values(), key=lambda p: str(p))


# ---------------------------------------------------------------- planning


def _plan_key(directory: str | None, name: str) -> tuple[str | None, str]:
    return (folders.canonical(directory) if directory else None, normalise_name(name).lower())


def _counts_as_missing(ref: Reference, include_bypassed: bool) -> bool:
    if ref.bypassed and not include_bypassed:
        return False
    return ref.status in ("missing", "unknown")


def _merge(into: MissingModel, other: MissingModel) -> None:
    for wf in other.workflows:
        if wf not in into.workflows:
            into.workflows.append(wf)
    for nt in other.node_types:
        if nt not in into.node_types:
            into.node_types.append(nt)
    for hint in other.hints:
        if hint not in into.hints:
            into.hints.append(hint)
    into.bypassed_only = into.bypassed_only and other.bypassed_only


def plan(references: Iterable[Reference], *, include_bypassed: bool = False) -> list[MissingModel]:
    """De-duplicate the references that need a download: same folder + normalised name = one model.

    References on bypassed or muted nodes count only with `include_bypassed`. A name without extension
    (a lora stem from prompt text) joins the same model with an extension, and a reference whose folder
    is unknown joins the one model of that name whose folder is known, so nothing is fetched twice.
    """
    models: dict[tuple[str | None, str], MissingModel] = {}
    for ref in references:
        if not _counts_as_missing(ref, include_bypassed):
            continue
        key = _plan_key(ref.directory, ref.name)
        model = models.get(key)
        if model is None:
            model = models[key] = MissingModel(normalise_name(ref.name), key[0], bypassed_only=True)
        _merge(
            model,
            MissingModel(
                name=model.name,
                directory=model.directory,
                workflows=[ref.workflow],
                node_types=[ref.node_type] if ref.node_type else [],
                hints=list(ref.hints),
                bypassed_only=ref.bypassed,
            ),
        )
    _fold_stems(models)
    _fold_unknown_folders(models)
    return list(models.values())


def _fold_stems(models: dict[tuple[str | None, str], MissingModel]) -> None:
    for key in list(models):
        directory, name = key
        if folders.is_model_file(name):
            continue
        matches = [k for k in models if k[0] == directory and k[1] != name and k[1].rsplit(".", 1)[0] == name]
        if len(matches) == 1:
            _merge(models[matches[0]], models.pop(key))


def _fold_unknown_folders(models: dict[tuple[str | None, str], MissingModel]) -> None:
    for key in [k for k in models if k[0] is None]:
        matches = [k for k in models if k[0] is not None and k[1] == key[1]]
        if len(matches) == 1:
            _merge(models[matches[0]], models.pop(key))


# ---------------------------------------------------------------- the stage

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
) -> ScanReport:
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


def _planned(ref: Reference) -> bool:
    """Files nodes load, and the stems prompt text names (`embedding:x`, `<lora:x:w>`) in a known folder.

    Directory-type values (diffusers folders, HF snapshots) stay reported only: no source serves a
    folder as one file.
    """
    if ref.strategy == "text":
        return ref.directory is not None
    return folders.is_model_file(ref.name)


def reference_kind(ref: Reference) -> str:
    """`file` (a loader's file name), `text` (a stem named in prompt text) or `directory`."""
    if ref.strategy == "text":
        return "text"
    return "file" if folders.is_model_file(ref.name) else "directory"


def _report(
    workflows: list[WorkflowResult], comfyui: Path | None, inventory: Inventory | None, include_bypassed: bool
) -> ScanReport:
    log.info(
        "scanned %d workflow files (%d unreadable), %d references",
        len(workflows),
        sum(1 for wf in workflows if wf.error),
        sum(len(wf.references) for wf in workflows),
    )
    needed = (r for wf in workflows for r in (*wf.references, *wf.text_references) if _planned(r))
    missing = plan(needed, include_bypassed=include_bypassed)
    return ScanReport(
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
) -> tuple[ScanReport, Path | None]:
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


# ---------------------------------------------------------------- JSON shapes


def _hint_json(hint: Hint) -> dict[str, Any]:
    return {
        "url": hint.url,
        "hash": hint.hash,
        "hash_type": hint.hash_type,
        "directory": hint.directory,
        "source": hint.source,
    }


def reference_json(ref: Reference) -> dict[str, Any]:
    return {
        "workflow": ref.workflow,
        "node_id": ref.node_id,
        "node_type": ref.node_type,
        "input_name": ref.input_name,
        "name": ref.name,
        "directory": ref.directory,
        "url": ref.url,
        "hash": ref.hash,
        "bypassed": ref.bypassed,
        "status": ref.status,
        "local_path": ref.local_path,
        "strategy": ref.strategy,
        "folder_guessed": ref.folder_guessed,
        "kind": reference_kind(ref),
    }


def missing_json(model: MissingModel, target_dir: Path | None = None) -> dict[str, Any]:
    return {
        "name": model.name,
        "directory": model.directory,
        "file_name": model.file_name,
        "kind": "file" if folders.is_model_file(model.file_name) else "text",
        "workflows": list(model.workflows),
        "node_types": list(model.node_types),
        "url": model.url,
        "hash": model.hash,
        "hints": [_hint_json(h) for h in model.hints],
        "bypassed_only": model.bypassed_only,
        "target_dir": str(target_dir) if target_dir is not None else None,
    }


def workflow_json(wf: WorkflowResult) -> dict[str, Any]:
    return {
        "path": wf.path,
        "format": wf.format,
        "error": wf.error,
        "reference_count": len(wf.references),
        "unknown_nodes": list(wf.unknown_nodes),
        "unused_hints": [
            {"name": h.name, "directory": h.directory, "url": h.url, "source": h.source, "reason": h.reason}
            for h in wf.unused_hints
        ],
    }


def report_json(report: ScanReport, *, plan_path: Path | None = None) -> dict[str, Any]:
    """The one JSON object `scan --json` prints (DESIGN.md), with a few extra keys."""
    return {
        "comfyui_root": str(report.comfyui_root) if report.comfyui_root is not None else None,
        "include_bypassed": report.include_bypassed,
        "plan_file": str(plan_path) if plan_path is not None else None,
        "counts": report.counts(),
        "workflows": [workflow_json(wf) for wf in report.workflows],
        "references": [reference_json(ref) for ref in report.references],
        "text_references": [reference_json(ref) for ref in report.text_references],
        "missing": [missing_json(m, report.target_dir(m)) for m in report.missing],
    }


def write_plan(report: ScanReport, output_dir: Path) -> Path:
    """Write `output_dir/missing_models.json` atomically; returns its path."""
    path = output_dir / PLAN_FILE
    generated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.generated_at))
    body = {
        "schema": SCHEMA_VERSION,  # first, as `atomic_write_json` writes every state file
        "generated_at": generated,
        "comfyui_root": str(report.comfyui_root) if report.comfyui_root is not None else None,
        "include_bypassed": report.include_bypassed,
        "workflows": len(report.workflows),
        "missing": [missing_json(m, report.target_dir(m)) for m in report.missing],
    }
    atomic_write_text(path, indented_json(body) + "\n")
    return path


def _null(_value: object) -> str:
    return "null"


def _bool(value: object) -> str:
    return "true" if value else "false"


# Exact type -> JSON text, for the leaves of a plan (floats and subclasses go through `json.dumps`).
_LEAVES: dict[type, Callable[[Any], str]] = {
    str: encode_basestring,
    type(None): _null,
    bool: _bool,
    int: int.__repr__,
}


def indented_json(value: object, pad: str = "\n") -> str:
    """`json.dumps(value, indent=2, ensure_ascii=False)`, about three times as fast for plain values.

    With `indent` the json module runs its pure-Python encoder, which made writing a large plan cost
    more than classifying every reference. Strings use the json module's own (C) escaping; a value
    other than dict, list, str, int, bool and None is left to `json.dumps` itself.
    """
    leaf = _LEAVES.get(type(value))
    if leaf is not None:
        return leaf(value)
    inner = pad + "  "
    parts = []
    if type(value) is list or type(value) is tuple:
        if not value:
            return "[]"
        for item in value:
            leaf = _LEAVES.get(type(item))
            parts.append(leaf(item) if leaf is not None else indented_json(item, inner))
        return "[" + inner + ("," + inner).join(parts) + pad + "]"
    if type(value) is dict and all(type(key) is str for key in value):
        if not value:
            return "{}"
        for key, item in value.items():
            leaf = _LEAVES.get(type(item))
            text = leaf(item) if leaf is not None else indented_json(item, inner)
            parts.append(encode_basestring(key) + ": " + text)
        return "{" + inner + ("," + inner).join(parts) + pad + "}"
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", pad)


__all__ = [
    "PLAN_FILE",
    "ScanReport",
    "discover",
    "indented_json",
    "missing_json",
    "parallel_workers",
    "parse_workflow",
    "plan",
    "reference_json",
    "report_json",
    "scan",
    "scan_with_settings",
    "workflow_json",
    "write_plan",
]
