"""Which references need a download, de-duplicated into the missing models the run will fetch."""

from __future__ import annotations

from collections.abc import Iterable

from comfyfixer import folders
from comfyfixer.models import MissingModel, Reference, WorkflowResult, base_name, normalise_name


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


def planned(ref: Reference) -> bool:
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


MAX_CONTEXT = 24  # names per model: enough to place it, bounded for huge workflows


def attach_context(models: Iterable[MissingModel], workflows: Iterable[WorkflowResult]) -> None:
    """Give each planned model the other model files its workflows load (present ones too): the
    evidence a resolver needs for a generic name (`ae.safetensors` beside `flux1-dev.safetensors`)."""
    names: dict[str, list[str]] = {}
    for wf in workflows:
        seen: dict[str, None] = {}
        for ref in wf.references:
            seen.setdefault(base_name(ref.name), None)
        names[wf.path] = list(seen)
    for model in models:
        own = model.file_name.lower()
        context: dict[str, None] = {}
        for path in model.workflows:
            for name in names.get(path, ()):
                if name.lower() != own and len(context) < MAX_CONTEXT:
                    context.setdefault(name, None)
        model.context = list(context)
