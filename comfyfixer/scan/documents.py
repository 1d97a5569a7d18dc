"""The JSON documents a scan produces (DESIGN.md): `scan --json` and `output/missing_models.json`.

Built here so every command that shows a scan shows the same thing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from comfyfixer import folders
from comfyfixer.models import Hint, MissingModel, Reference, WorkflowResult
from comfyfixer.scan.missing import reference_kind
from comfyfixer.scan.result import ScanResult
from comfyfixer.state.atomic import atomic_write_json

PLAN_FILE = "missing_models.json"


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
        "directory_source": directory_source(ref),
        "evidence": ref.folder_evidence,
        "kind": reference_kind(ref),
    }


def directory_source(ref: Reference) -> str | None:
    """Where the folder came from: `node` (the loader table or the file's widget names), `hint`
    (a models list), `prompt` (an embedding:/lora tag), `inferred` (evidence, see `evidence`)."""
    if ref.directory is None:
        return None
    if ref.folder_guessed:
        return "inferred"
    if ref.strategy in ("properties.models", "top-level models"):
        return "hint"
    if ref.strategy == "text":
        return "prompt"
    return "node"


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


def scan_json(report: ScanResult, *, plan_path: Path | None = None) -> dict[str, Any]:
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


def write_plan(report: ScanResult, output_dir: Path) -> Path:
    """Write `output_dir/missing_models.json` atomically; returns its path."""
    path = output_dir / PLAN_FILE
    generated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.generated_at))
    body = {
        "generated_at": generated,
        "comfyui_root": str(report.comfyui_root) if report.comfyui_root is not None else None,
        "include_bypassed": report.include_bypassed,
        "workflows": len(report.workflows),
        "missing": [missing_json(m, report.target_dir(m)) for m in report.missing],
    }
    atomic_write_json(path, body)  # the schema field first, as in every state file
    return path
