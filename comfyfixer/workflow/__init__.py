"""The workflow parser: one workflow file to the model references it names (the scan stage is `scan/`).

`parse_file`, `parse_bytes` and `parse_document` never raise for bad input: a file that cannot be read
yields a WorkflowResult whose `error` is a one-line reason. Formats: UI (schema 0.4 and 1, subgraphs,
group nodes), API (bare or wrapped in {"prompt": ...}), and both embedded in PNG or WebP images.
"""

from __future__ import annotations

import stat
from pathlib import Path

from comfyfixer.models import WorkflowResult
from comfyfixer.workflow.api import is_api, walk_api
from comfyfixer.workflow.collect import Collector
from comfyfixer.workflow.loader import LoadError, load_bytes
from comfyfixer.workflow.ui import is_ui, walk_ui

__all__ = ["MAX_FILE_BYTES", "parse_bytes", "parse_document", "parse_file"]

# Real workflows are kilobytes to a few megabytes; a bigger file is not one we should hold in memory.
MAX_FILE_BYTES = 256 * 1024 * 1024


def parse_file(path: Path, *, stems: bool = False) -> WorkflowResult:
    """Read and parse one workflow file (.json, .png, .webp)."""
    shown = str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return WorkflowResult(path=shown, error="not a regular file")
        size = info.st_size
        if size > MAX_FILE_BYTES:
            return WorkflowResult(path=shown, error=f"file is too large to be a workflow ({size} bytes)")
        data = path.read_bytes()
    except OSError as exc:
        return WorkflowResult(path=shown, error=f"cannot read file: {exc.strerror or exc}")
    return parse_bytes(data, shown, stems=stems)


def parse_bytes(data: bytes, path: str, *, stems: bool = False) -> WorkflowResult:
    """Parse the bytes of a workflow file; `path` is only used to label the result."""
    try:
        loaded = load_bytes(data)
    except LoadError as exc:
        return WorkflowResult(path=path, error=str(exc))
    if loaded.container == "json":
        return parse_document(loaded.documents["json"], path, stems=stems)
    col = Collector(workflow=path, stems=stems)
    kinds = []
    # UI first: it carries properties.models hints; the API prompt then adds what the UI lacks.
    for key in ("workflow", "prompt"):
        if key in loaded.documents:
            kind = _walk(loaded.documents[key], col)
            if kind is not None and kind not in kinds:
                kinds.append(kind)
    if not kinds:
        return WorkflowResult(
            path=path, error=f"{loaded.container.upper()} metadata holds JSON that is not a ComfyUI workflow"
        )
    return _result(path, f"{loaded.container}:{'+'.join(kinds)}", col)


def parse_document(doc: object, path: str, *, stems: bool = False) -> WorkflowResult:
    """Parse an already-decoded JSON value."""
    col = Collector(workflow=path, stems=stems)
    try:
        kind = _walk(doc, col)
    except RecursionError:
        return WorkflowResult(path=path, error="workflow is nested too deeply to read")
    if kind is None:
        return WorkflowResult(path=path, error=_not_a_workflow(doc))
    return _result(path, kind, col)


def _walk(doc: object, col: Collector) -> str | None:
    """Walk one document into the collector; return its format name, None when it is no workflow."""
    if is_ui(doc):
        assert isinstance(doc, dict)
        walk_ui(doc, col)
        return "ui"
    if isinstance(doc, dict):
        prompt = doc.get("prompt")
        if is_api(prompt):
            assert isinstance(prompt, dict)
            extra = doc.get("extra_data")
            pnginfo = extra.get("extra_pnginfo") if isinstance(extra, dict) else None
            embedded = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
            if is_ui(embedded):
                assert isinstance(embedded, dict)
                walk_ui(embedded, col)
            walk_api(prompt, col)
            return "api-wrapped"
        wrapped = doc.get("workflow")
        if is_ui(wrapped):
            assert isinstance(wrapped, dict)
            walk_ui(wrapped, col)
            return "ui"
    if is_api(doc):
        assert isinstance(doc, dict)
        walk_api(doc, col)
        return "api"
    return None


def _not_a_workflow(doc: object) -> str:
    if not isinstance(doc, dict):
        return f"not a ComfyUI workflow: the JSON is a {type(doc).__name__}, not an object"
    return "not a ComfyUI workflow: no 'nodes' list (UI format) and no nodes with 'class_type' (API format)"


def _result(path: str, kind: str, col: Collector) -> WorkflowResult:
    refs = col.finish()
    return WorkflowResult(
        path=path,
        format=kind,
        references=refs,
        unknown_nodes=list(col.unknown_nodes),
        unused_hints=list(col.unused_hints),
    )
