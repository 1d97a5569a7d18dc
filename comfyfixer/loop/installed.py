"""The models a run had no need to fetch, as results, so `run --json` lists every model the workflows
need and not only the ones this run searched (DESIGN "run --json": `already_present`).

Installed (the scan found the file where ComfyUI loads it): `already_present`, with its path and, when
known without hashing, its sha256 — from `downloaded_models.json` (a download this tool verified) or
from the script's `<file>.sha256` sidecar whose size/mtime/inode stamp still matches. A file the user
installed by other means is not hashed: that would read every installed checkpoint on every run.
Installed elsewhere (`misplaced`): `skipped`, with where the copy sits and what to do about it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from comfyfixer.loop.result import ModelResult
from comfyfixer.models import MissingModel, Reference, normalise_name
from comfyfixer.state.store import DownloadRecord, model_key
from comfyfixer.verify import sidecar_sha256

MISPLACED = "a copy sits at {path}, not where ComfyUI looks: move or link it into models/{directory}/"


def installed_results(
    references: Iterable[Reference], records: Iterable[DownloadRecord], *, include_bypassed: bool = False
) -> list[ModelResult]:
    """One result per installed or misplaced model (folder + name), in first-seen order."""
    by_path = {_real(r.path): r for r in records if r.path}
    results: dict[str, ModelResult] = {}
    for ref in references:
        if ref.status not in ("present", "misplaced") or (ref.bypassed and not include_bypassed):
            continue
        key = model_key(ref.directory, ref.name)
        known = results.get(key)
        if known is not None:
            if ref.workflow not in known.workflows:
                known.workflows.append(ref.workflow)
            continue
        results[key] = _result(ref, by_path)
    return list(results.values())


@dataclass(frozen=True, slots=True)
class _OnDisk:
    """An installed file as a result's `Origin`: its size as found, and what is known of its source."""

    source: str | None
    url: str | None
    sha256: str | None
    size: int | None


def _result(ref: Reference, by_path: dict[str, DownloadRecord]) -> ModelResult:
    needed = MissingModel(name=normalise_name(ref.name), directory=ref.directory, workflows=[ref.workflow])
    path = ref.local_path
    if ref.status == "misplaced":
        reason = MISPLACED.format(path=path or "?", directory=ref.directory or "?")
        return ModelResult.of(needed, "skipped", reason, path=path)
    size = _size(path)
    record = by_path.get(_real(path)) if path else None
    if record is not None and record.file_intact():
        reason = f"installed; downloaded and verified by comfyfixer ({record.time or 'unknown time'})"
        origin = _OnDisk(record.source, record.url, record.sha256, size)
        script = record.script
        return ModelResult.of(needed, "already_present", reason, origin=origin, script=script, path=path)
    sha = sidecar_sha256(Path(path)) if path else None
    reason = "installed" if sha else "installed (not downloaded by comfyfixer: sha256 not computed)"
    return ModelResult.of(needed, "already_present", reason, origin=_OnDisk(None, None, sha, size), path=path)


def _real(path: str) -> str:
    return os.path.realpath(path)


def _size(path: str | None) -> int | None:
    if not path:
        return None
    try:
        return os.stat(path).st_size
    except OSError:
        return None
