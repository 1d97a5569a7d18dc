"""The real ComfyUI-Manager catalogue (`../shared/reference/catalog/model-list.json`): every entry with a
file URL is parsed, found again by its file name and folder, and becomes a well-formed candidate.

Hosts outside the download allowlist (dl.fbaipublicfiles.com, ...) still parse and match; whether such
a curated per-file host may be downloaded from is the script's decision (issue 9), so here they are
only counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from comfyfixer.config import Settings
from comfyfixer.folders import DEFAULT_DIRS, canonical, is_model_file
from comfyfixer.resolvers.catalogue import Catalogue, entry_filename, entry_folder
from comfyfixer.resolvers.urls import clean_url

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CATALOGUE = SHARED / "reference" / "catalog" / "model-list.json"


def _entries() -> list[dict[str, Any]]:
    if not CATALOGUE.is_file():
        pytest.skip(f"real catalogue not found at {CATALOGUE} (../shared beside the repo)")
    body = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    models = body["models"]
    assert isinstance(models, list)
    return [m for m in models if isinstance(m, dict)]


def _file_url(entry: dict[str, Any]) -> bool:
    """An http(s) URL whose path ends in a file (some entries name a whole repo instead)."""
    url = str(entry.get("url") or "")
    parts = urlsplit(url)
    tail = unquote(parts.path.rstrip("/").rsplit("/", 1)[-1])
    return parts.scheme in ("http", "https") and "." in tail.strip(".")


def test_every_file_entry_is_matched_by_name_and_folder_and_is_a_valid_candidate(figures: list[str]) -> None:
    entries = _entries()
    settings = Settings(catalog_url=None)
    catalogue = Catalogue.from_entries(settings, entries)
    with_file = [e for e in entries if _file_url(e)]
    assert len(with_file) >= 500, "the catalogue shrank: is this still model-list.json?"
    known = set(DEFAULT_DIRS)
    outside_allowlist: list[str] = []
    unregistered: set[str] = set()
    for entry in with_file:
        name = entry_filename(entry)
        folder = entry_folder(entry)
        assert name and "/" not in name, entry
        url = clean_url(str(entry["url"]), settings)
        assert url is not None, entry["url"]
        hits = catalogue.lookup(name, folder)
        mine = [c for c in hits if c.url == url]
        assert mine, f"{name} [{folder}] not found again by name and folder"
        c = mine[0]
        assert c.filename == name and c.source == "catalogue"
        assert c.directory_hint == folder
        assert catalogue.lookup(name.upper(), folder), "file names match case-insensitively"
        if folder is not None:
            assert folder == canonical(folder)
            if folder not in known:
                unregistered.add(folder)
            # Not matched under an unrelated folder (a checkpoint is no LoRA).
            other = "loras" if folder != "loras" else "checkpoints"
            assert all(x.url != url for x in catalogue.lookup(name, other)) or any(
                entry_folder(e) == other and entry_filename(e) == name for e in with_file
            )
        if not settings.host_allowed(url):
            outside_allowlist.append(urlsplit(url).hostname or "?")
        if is_model_file(name):
            assert not name.startswith(".")
    figures.append(
        f"real catalogue: {len(with_file)}/{len(entries)} entries with a file URL, all matched by name and "
        f"folder; {len(outside_allowlist)} on hosts outside the allowlist "
        f"({', '.join(sorted(set(outside_allowlist)))}); pack folders not registered: {len(unregistered)}"
    )


def test_manager_save_paths_map_to_comfyui_folder_keys() -> None:
    assert entry_folder({"save_path": "xlabs/controlnets"}) == "xlabs_controlnets"
    assert entry_folder({"save_path": "ultralytics/bbox"}) == "ultralytics"
    assert entry_folder({"save_path": "insightface/models/antelopev2"}) == "insightface"
    assert entry_folder({"save_path": "checkpoints/SDXL"}) == "checkpoints"
    assert entry_folder({"save_path": "clip"}) == "text_encoders"
    assert entry_folder({"save_path": "custom_nodes/ComfyUI-X/models"}) is None
    assert entry_folder({"save_path": "default", "type": "TextualInversion"}) == "etc"
    assert entry_folder({"save_path": "default", "type": "embeddings"}) == "embeddings"
