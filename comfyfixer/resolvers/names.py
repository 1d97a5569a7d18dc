"""Which remote file names answer a referenced name, and which one a stem prefers.

A loader names a file (`ae.safetensors`): only that name, case aside, is accepted. Prompt text names
a stem (`embedding:EasyNegative`, `<lora:add_detail:0.6>`), which ComfyUI completes with a weights
extension; so a stem accepts exactly `<stem><ext>` for those extensions, `.safetensors` first
(it cannot run code on load), then the pickle formats ComfyUI also tries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from comfyfixer.folders import is_model_file
from comfyfixer.models import Candidate, base_name

# The extensions ComfyUI's embedding loader tries for a bare name, best first (`.ckpt` for old loras).
STEM_EXTENSIONS = (".safetensors", ".pt", ".bin", ".ckpt")


# What follows the last dot of a non-model file (`.yaml`, `.cfg.py`, `.jit`); a stem's dot is part of a
# version instead (`Ulzzang-6500-v1.1`), so its "suffix" starts with a digit.
_FILE_SUFFIX = re.compile(r"\.[a-z][a-z0-9]{0,5}$", re.IGNORECASE)


def is_stem(name: str) -> bool:
    """A bare name, as prompt tags and Lora-Manager lists hold: no model extension and no file suffix."""
    base = base_name(name)
    return not is_model_file(base) and _FILE_SUFFIX.search(base) is None


def accepted_names(name: str) -> tuple[str, ...]:
    """The lower-cased remote file names that are the referenced one, most preferred first."""
    base = base_name(name).lower()
    if not is_stem(base):
        return (base,)
    return tuple(base + ext for ext in STEM_EXTENSIONS)


def accepts(name: str, remote_file_name: str) -> bool:
    return base_name(remote_file_name).lower() in accepted_names(name)


def search_name(name: str) -> str:
    """A file name to derive search queries from: a stem is searched as its `.safetensors` file."""
    base = base_name(name)
    return base + STEM_EXTENSIONS[0] if is_stem(base) else base


def install_name(name: str, remote_file_name: str) -> str:
    """The name to install under: the referenced name, completed with the chosen file's extension
    when it was a stem (ComfyUI reads `.safetensors` only from a file that says so)."""
    if not is_stem(name):
        return name
    lowered = base_name(remote_file_name).lower()
    for ext in STEM_EXTENSIONS:
        if lowered == base_name(name).lower() + ext:
            return name + ext
    return name


def best_extension_only(name: str, candidates: Iterable[Candidate]) -> list[Candidate]:
    """For a stem, drop a place's pickle copies when the same place also offers `.safetensors`.

    One Civitai version or Hub repo publishing `x.safetensors` and `x.pt` is one model in two
    formats: the safer format is taken. Different places still stand as different files (decide.py
    then settles or declares them ambiguous).
    """
    pool = list(candidates)
    order = accepted_names(name)
    if len(order) == 1:
        return pool
    rank = {n: i for i, n in enumerate(order)}

    def place(c: Candidate) -> str:
        return f"{c.source}:{c.repo or c.url}"

    best: dict[str, int] = {}
    for c in pool:
        r = rank.get(base_name(c.filename).lower(), len(order))
        best[place(c)] = min(best.get(place(c), r), r)
    return [c for c in pool if rank.get(base_name(c.filename).lower(), len(order)) == best[place(c)]]
