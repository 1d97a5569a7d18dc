"""The per-workflow reference collector and the node rule both formats share.

A node is read the same way whatever format it came from: values known by input name (API inputs,
dict-form widgets, subgraph overrides), values known by position (UI `widgets_values`) and the widget
names the file itself lists. `node_references` turns them into References with the loader table first
and value shapes as the safety net; `Collector` de-duplicates and applies workflow-level hints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from comfyfixer.folders import canonical
from comfyfixer.models import Hint, Reference, UnusedHint, base_name, normalise_name
from comfyfixer.workflow import heuristics
from comfyfixer.workflow.nodes import InputSpec, lookup

_TEXT_LORA_FOLDER = "loras"
_TEXT_EMBEDDING_FOLDER = "embeddings"
# Frontend nodes that only hold a value for another node's input; not a missing loader pack.
_VALUE_CARRIERS = ("PrimitiveNode", "PrimitiveString", "Reroute")


@dataclass(slots=True)
class NodeView:
    """One node's values, whatever the format: by name, by position, and the file's own widget names."""

    node_id: str
    node_type: str
    bypassed: bool = False
    named: Mapping[str, object] = field(default_factory=dict)
    positional: Sequence[object] = ()
    widget_names: Sequence[str] = ()


@dataclass(slots=True)
class Collector:
    """References of one workflow, unique per (node, name), plus the hints found outside nodes."""

    workflow: str
    stems: bool = False
    refs: list[Reference] = field(default_factory=list)
    unknown_nodes: dict[str, None] = field(default_factory=dict)
    note_links: list[tuple[str, str]] = field(default_factory=list)  # (url, file name)
    # Hint-list entries that lent nothing: no node uses the name, or the node's folder disagrees.
    unused_hints: list[UnusedHint] = field(default_factory=list)
    _seen: dict[tuple[str | None, str], Reference] = field(default_factory=dict)

    def add(
        self,
        name: str,
        directory: str | None,
        *,
        view: NodeView | None,
        input_name: str | None,
        strategy: str,
        folder_guessed: bool = False,
    ) -> Reference:
        node_id = view.node_id if view else None
        key = (node_id, normalise_name(name))
        existing = self._seen.get(key)
        if existing is not None:
            if existing.directory is None and directory is not None:
                existing.directory = directory
                existing.strategy = strategy
                existing.input_name = existing.input_name or input_name
            return existing
        ref = Reference(
            workflow=self.workflow,
            name=name,
            directory=directory,
            node_id=node_id,
            node_type=view.node_type if view else None,
            input_name=input_name,
            bypassed=view.bypassed if view else False,
            strategy=strategy,
            folder_guessed=folder_guessed,
        )
        self._seen[key] = ref
        self.refs.append(ref)
        return ref

    def apply_node_models(self, view: NodeView, models: object) -> None:
        """Attach a node's `properties.models` entries whose name is a current string widget value."""
        if not isinstance(models, list):
            return
        current = {v for v in _top_values(view) if isinstance(v, str) and v}
        if not current:
            return
        by_norm = {normalise_name(v): v for v in current}
        # A user who moved the file into a sub-folder keeps the entry's bare name: same file, still valid.
        by_base = {base_name(v).lower(): v for v in current}
        for entry in models:
            hint = _model_hint(entry, "properties.models")
            if hint is None or not isinstance(entry, dict):
                continue
            entry_name = entry["name"]
            held = entry_name if entry_name in current else by_norm.get(normalise_name(entry_name))
            if held is None and "/" not in normalise_name(entry_name):
                held = by_base.get(entry_name.strip().lower())
            if held is None:
                continue  # stale: the node no longer selects this file (frontend rule)
            ref = self._seen.get((view.node_id, normalise_name(held)))
            if ref is None:
                ref = self.add(held, hint.directory, view=view, input_name=None, strategy="properties.models")
            elif ref.directory is None and hint.directory:
                ref.directory = hint.directory
                ref.strategy = "properties.models"
                ref.folder_evidence = "the node's own properties.models entry names the folder"
            elif not _folders_agree(ref.directory, hint.directory):
                # The node loads the name from another folder: the entry describes some other file.
                self._unused(entry_name, hint, f"node {view.node_id} loads it from {ref.directory}/")
                continue
            _attach(ref, hint)

    def apply_top_level_models(self, models: object) -> None:
        """Lend the workflow-level `models` list's URLs and hashes to the references that use each name.

        The list is a hint, not a need: an entry no node uses plans nothing, and an entry whose folder
        disagrees with the folder the node loads from lends nothing (the frontend's own rules).
        """
        if not isinstance(models, list):
            return
        for entry in models:
            hint = _model_hint(entry, "top-level models")
            if hint is None or not isinstance(entry, dict):
                continue
            norm = normalise_name(entry["name"]).lower()
            named = [r for r in self.refs if normalise_name(r.name).lower() == norm]
            if not named and "/" not in norm:
                # The list gives bare names; a node may hold the same file in a sub-folder.
                named = [r for r in self.refs if base_name(r.name).lower() == norm]
            matches = [r for r in named if _folders_agree(r.directory, hint.directory)]
            if not matches:
                why = (
                    "no node uses this name"
                    if not named
                    else f"the nodes load it from {', '.join(sorted({f'{r.directory}/' for r in named}))}"
                )
                self._unused(entry["name"], hint, why)
                continue
            for ref in matches:
                if ref.directory is None and hint.directory:
                    ref.directory = hint.directory
                    ref.strategy = "top-level models"
                    ref.folder_evidence = "the workflow's models list names the folder"
                _attach(ref, hint)

    def _unused(self, name: str, hint: Hint, why: str) -> None:
        self.unused_hints.append(
            UnusedHint(name=name, directory=hint.directory, url=hint.url, source=hint.source, reason=why)
        )

    def finish(self) -> list[Reference]:
        """Note links become hints; a folder-less reference takes the folder its file has elsewhere."""
        if self.note_links:
            for ref in self.refs:
                base = base_name(ref.name).lower()
                for url, file_name in self.note_links:
                    if file_name.lower() == base:
                        _attach(ref, Hint(url=url, directory=ref.directory, source="note"))
        infer_folders(self.refs, self.refs, "this workflow")
        return self.refs


def infer_folders(refs: Iterable[Reference], known_refs: Iterable[Reference], where: str) -> None:
    """Give a folder-less reference the folder its file has elsewhere, when that is one folder.

    Evidence, not a guess: another node (of `where`) loads the very same file name from that folder.
    Two different folders for the name decide nothing and leave the reference without one.
    """
    known: dict[str, dict[str, Reference]] = {}
    for ref in known_refs:
        if ref.directory is not None:
            known.setdefault(normalise_name(ref.name).lower(), {}).setdefault(ref.directory, ref)
    for ref in refs:
        if ref.directory is not None:
            continue
        dirs = known.get(normalise_name(ref.name).lower())
        if dirs and len(dirs) == 1:
            folder, source = next(iter(dirs.items()))
            ref.directory = folder
            ref.folder_guessed = True
            ref.folder_evidence = (
                f"the same file is loaded from {folder}/ by {source.node_type or 'a node'}"
                f" (node {source.node_id or '?'}) in {where}"
            )


def _folders_agree(node_folder: str | None, hint_folder: str | None) -> bool:
    """A hint fits a reference unless both name a folder and the folders differ."""
    return node_folder is None or hint_folder is None or canonical(node_folder) == canonical(hint_folder)


def _top_values(view: NodeView) -> list[object]:
    return [*view.positional, *view.named.values()]


def _model_hint(entry: object, source: str) -> Hint | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
        return None
    url = entry.get("url")
    digest = entry.get("hash")
    hash_type = entry.get("hash_type")
    directory = entry.get("directory")
    return Hint(
        url=url if isinstance(url, str) and url else None,
        hash=digest if isinstance(digest, str) and digest else None,
        hash_type=hash_type if isinstance(hash_type, str) and hash_type else None,
        directory=canonical(directory) if isinstance(directory, str) and directory else None,
        source=source,
    )


def _attach(ref: Reference, hint: Hint) -> None:
    if hint.url is None and hint.hash is None:
        return
    if any(h.url == hint.url and h.hash == hint.hash for h in ref.hints):
        return
    ref.hints.append(hint)


def node_references(col: Collector, view: NodeView) -> None:
    """Every model a node names: table inputs, then model-looking leftovers, then (opt-in) text stems."""
    spec = lookup(view.node_type)
    taken: set[str] = set()
    if spec is not None:
        aligned = bool(view.widget_names) and len(view.widget_names) == len(view.positional)
        for inp in spec.inputs:
            for input_name, value, strategy in _values_for(view, inp, aligned):
                for name in _names_in(value, inp, col.stems):
                    col.add(name, inp.folder, view=view, input_name=input_name, strategy=strategy)
                    taken.add(name)
    leftovers = False
    values = _top_values(view)
    for value in values:
        for name in heuristics.model_strings(value):
            if name in taken:
                continue
            taken.add(name)
            if spec is not None and spec.any_folder is not None:
                col.add(name, spec.any_folder, view=view, input_name=None, strategy="table")
            elif spec is not None and spec.single_folder is not None:
                # A loader whose every model input goes to one folder: an unlisted input most likely does too.
                ref = col.add(
                    name,
                    spec.single_folder,
                    view=view,
                    input_name=None,
                    strategy="table",
                    folder_guessed=True,
                )
                ref.folder_evidence = ref.folder_evidence or (
                    f"every model input of {view.node_type} loads from {spec.single_folder}/"
                )
            else:
                leftovers = True
                col.add(name, None, view=view, input_name=None, strategy="heuristic")
    if leftovers and spec is None and not view.node_type.startswith(_VALUE_CARRIERS):
        col.unknown_nodes.setdefault(view.node_type)
    if col.stems:
        _text_references(col, view, values, taken)


def _values_for(view: NodeView, inp: InputSpec, aligned: bool) -> Iterable[tuple[str, object, str]]:
    if inp.pattern is not None:
        for key, value in view.named.items():
            if inp.matches(key):
                yield key, value, "table"
        return
    if inp.name in view.named:
        yield inp.name, view.named[inp.name], "table"
        return
    if not view.positional:
        return
    position = inp.index
    strategy = "table"
    if aligned and inp.name in view.widget_names:
        # The file lists every widget by name in order: trust it over a table index that may be from
        # another version of the node.
        named_position = list(view.widget_names).index(inp.name)
        if named_position != position:
            position, strategy = named_position, "names"
    if position is not None and 0 <= position < len(view.positional):
        yield inp.name, view.positional[position], strategy


def _names_in(value: object, inp: InputSpec, stems: bool) -> list[str]:
    if isinstance(value, str):
        if heuristics.looks_like_model(value):
            return [value]
        if inp.directory_type and stems and heuristics.looks_like_dir_model(value):
            return [value]
        return []
    # pysssss {content: name}, rgthree {on, lora, strength}: the name sits inside a small dict.
    return list(heuristics.model_strings(value))


def _text_references(col: Collector, view: NodeView, values: list[object], taken: set[str]) -> None:
    for value in values:
        for text in heuristics.iter_strings(value):
            if ":" not in text:
                continue  # both tags hold one; most prompts do not
            for stem in heuristics.lora_tags(text):
                if stem not in taken:
                    taken.add(stem)
                    col.add(stem, _TEXT_LORA_FOLDER, view=view, input_name=None, strategy="text")
            for stem in heuristics.embedding_names(text):
                if stem not in taken:
                    taken.add(stem)
                    col.add(stem, _TEXT_EMBEDDING_FOLDER, view=view, input_name=None, strategy="text")
        # Lora-Manager keeps its loras as [{"name": stem, "active": bool, ...}].
        if isinstance(value, list):
            for item in value:
                if (
                    isinstance(item, dict)
                    and isinstance(item.get("name"), str)
                    and "strength" in item
                    and item.get("active", True) is not False
                    and item["name"] not in taken
                ):
                    taken.add(item["name"])
                    col.add(item["name"], _TEXT_LORA_FOLDER, view=view, input_name=None, strategy="text")
