"""The local install's files: an index of every file and folder under the install's model folders, and
where a referenced name is (present, misplaced, missing).

The folders themselves come from `layout.py`. Each directory tree is walked once; lookups are then set
and dict probes, so classifying tens of thousands of references costs next to nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from comfyfixer import folders
from comfyfixer.layout import Layout, is_under
from comfyfixer.models import Reference, Status, base_name, normalise_name
from comfyfixer.tree import iter_tree

log = logging.getLogger(__name__)

# ComfyUI's embedding loader tries the name as given, then these; lora names from prompt text lack
# the extension too, so the same rule serves every extension-less name.
IMPLIED_EXTENSIONS = (".safetensors", ".pt", ".bin", ".ckpt", ".pth", ".sft", ".gguf")
# Names so common inside repo snapshots that a copy in another folder is not evidence of anything.
GENERIC_NAMES = frozenset(
    {
        "model.safetensors",
        "model.bin",
        "model.pt",
        "model.pth",
        "model.ckpt",
        "model.onnx",
        "pytorch_model.bin",
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.bin",
        "adapter_model.safetensors",
        "adapter_model.bin",
    }
)


class Inventory:
    """What is installed: an index of every file and folder under the layout's model folders."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._files: set[str] = set()
        self._dirs: set[str] = set()
        self._files_lower: dict[str, str] = {}
        self._dirs_lower: dict[str, str] = {}
        self._by_base: dict[str, list[str]] = {}
        self._memo: dict[tuple[str | None, str], tuple[Status, str | None]] = {}
        for top in layout.top_dirs:
            self._index(top)

    @classmethod
    def load(cls, comfyui_root: Path, extra_yaml: Sequence[Path] = ()) -> Inventory:
        """Read the install's folders (`Layout.load`) and index every model file under them."""
        return cls(Layout.load(comfyui_root, extra_yaml))

    def _index(self, top: str) -> None:
        files, dirs, by_base = self._files, self._dirs, self._by_base
        files_lower, dirs_lower = self._files_lower, self._dirs_lower
        for path, is_dir in iter_tree(top):
            if is_dir:
                dirs.add(path)
                dirs_lower.setdefault(path.lower(), path)
                continue
            files.add(path)
            lowered = path.lower()
            files_lower.setdefault(lowered, path)
            by_base.setdefault(lowered.rsplit(os.sep, 1)[-1], []).append(path)

    # ---------------------------------------------------------------- queries

    def locate(self, directory: str | None, name: str) -> tuple[Status, str | None]:
        """Classify one name: ("present" | "misplaced" | "missing", the path where it was found)."""
        # Big scans name the same few hundred models thousands of times; the index never changes.
        key = (directory, name)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._locate(directory, name)
        return found

    def _locate(self, directory: str | None, name: str) -> tuple[Status, str | None]:
        clean = normalise_name(name)
        if not clean or any(part == ".." for part in clean.split("/")):
            return "missing", None  # a name that climbs out of its folder is never installed
        variants = _variants(clean)
        keys: Iterable[str] = self.layout.keys if directory is None else [folders.canonical(directory)]
        dir_paths = [d for key in keys for d in self.layout.dir_paths(key)]
        found = self._exact(dir_paths, variants, as_dir=not folders.is_model_file(clean))
        if found is not None:
            return "present", found
        if directory is None:
            return "missing", None
        found = self._elsewhere(dir_paths, variants)
        return ("misplaced", found) if found is not None else ("missing", None)

    def classify(self, ref: Reference) -> None:
        """Set `ref.status` and `ref.local_path` from this inventory."""
        ref.status, ref.local_path = self.locate(ref.directory, ref.name)

    def _exact(self, dir_paths: list[str], variants: list[str], *, as_dir: bool) -> str | None:
        for variant in variants:
            parts = variant.split("/")
            for d in dir_paths:
                path = os.path.join(d, *parts)
                if path in self._files or (as_dir and path in self._dirs):
                    return path
        return None

    def _elsewhere(self, dir_paths: list[str], variants: list[str]) -> str | None:
        """Another case in the right folder, else the same base name in another sub-folder or folder key."""
        for variant in variants:
            parts = variant.split("/")
            for d in dir_paths:
                lowered = os.path.join(d, *parts).lower()
                hit = self._files_lower.get(lowered) or self._dirs_lower.get(lowered)
                if hit is not None:
                    return hit
        for variant in variants:
            base = base_name(variant).lower()
            if base in GENERIC_NAMES:
                continue  # every HF snapshot has one: a copy elsewhere says nothing about this model
            paths = self._by_base.get(base)
            if paths:
                # Prefer a copy inside the key's own directories (another sub-folder) over another key.
                own = [p for p in paths if any(is_under(p, d) for d in dir_paths)]
                return sorted(own or paths)[0]
        return None


def _variants(name: str) -> list[str]:
    """The names ComfyUI would try for `name`: as is, then with a model extension when it has none."""
    if folders.is_model_file(name):
        return [name]
    return [name, *(name + ext for ext in IMPLIED_EXTENSIONS)]
