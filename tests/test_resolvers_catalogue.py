"""catalogue.py: Manager list fetched, cached with ETag, revalidated, used offline; verified records."""

from __future__ import annotations

import json
from pathlib import Path

from comfyfixer.config import Settings
from comfyfixer.http import HttpSession, build_client
from comfyfixer.resolvers.catalogue import CACHE_NAME, Catalogue, VerifiedCatalogue, entry_folder
from comfyfixer.retry import RetryPolicy
from tests.fakes import FileServer

FAST = RetryPolicy(attempts=2, base_wait=0.01, max_backoff=0.02, server_wait_scale=0.01)
ENTRIES = [
    {
        "name": "4x-UltraSharp",
        "type": "upscale",
        "base": "upscale",
        "save_path": "default",
        "filename": "4x-UltraSharp.pth",
        "url": "https://huggingface.co/lokCX/4x-Ultrasharp/resolve/main/4x-UltraSharp.pth",
        "size": "66.9MB",
    },
    {
        "name": "face_yolov8m (bbox)",
        "type": "Ultralytics",
        "save_path": "ultralytics/bbox",
        "filename": "face_yolov8m.pt",
        "url": "https://huggingface.co/Bingsu/adetailer/resolve/main/face_yolov8m.pt",
    },
    {
        "name": "clip_l",
        "type": "clip",
        "save_path": "default",
        "filename": "<huggingface>",
        "url": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
    },
    {
        "name": "pack-local",
        "type": "etc",
        "save_path": "custom_nodes/SomePack/models",
        "filename": "thing.pth",
        "url": "https://github.com/x/y/releases/download/v1/thing.pth",
    },
]


def test_entry_folders_follow_manager_rules() -> None:
    assert [entry_folder(e) for e in ENTRIES] == ["upscale_models", "ultralytics", "text_encoders", None]
    assert entry_folder({"type": "unet", "save_path": "default"}) == "diffusion_models"
    assert entry_folder({"type": "mystery", "save_path": "default"}) == "etc"


def test_lookup_matches_exact_name_and_folder() -> None:
    catalogue = Catalogue.from_entries(Settings(catalog_url=None), ENTRIES)
    hits = catalogue.lookup("sub/4X-ULTRASHARP.pth", "upscale_models")
    assert [c.url for c in hits] == [ENTRIES[0]["url"]]
    assert catalogue.lookup("4x-UltraSharp.pth", "checkpoints") == []  # wrong folder
    assert catalogue.lookup("4x-UltraSharp", "upscale_models") == []  # no prefix matches
    assert catalogue.lookup("clip_l.safetensors", "clip")[0].source == "catalogue"  # alias folder
    assert catalogue.lookup("face_yolov8m.pt", None)  # unknown folder: name alone
    assert catalogue.lookup("thing.pth", "upscale_models") == []  # pack-local file


def _settings(url: str) -> Settings:
    return Settings(catalog_url=url, extra_allowed_hosts=("127.0.0.1",))


def test_fetch_cache_revalidate_and_offline(file_server: FileServer, tmp_path: Path) -> None:
    url = file_server.set_catalogue(ENTRIES)
    cache = tmp_path / "cache"
    with build_client() as client:
        first = Catalogue(_settings(url), HttpSession(client, policy=FAST), cache)
        assert first.lookup("face_yolov8m.pt", "ultralytics")
        assert first.status == "fresh"
        assert first.lookup("4x-UltraSharp.pth", "upscale_models")  # loaded once per run
        assert len(file_server.requests_to("/model-list.json")) == 1
        assert json.loads((cache / CACHE_NAME).read_text())["models"][0]["filename"] == "4x-UltraSharp.pth"

        second = Catalogue(_settings(url), HttpSession(client, policy=FAST), cache)
        assert second.lookup("face_yolov8m.pt", "ultralytics")
        assert second.status == "revalidated"
        revalidation = file_server.requests_to("/model-list.json")[-1]
        assert revalidation.headers.get("if-none-match") and revalidation.status == 304

        file_server.fail("/model-list.json", 503, times=None)
        offline = Catalogue(_settings(url), HttpSession(client, policy=FAST), cache)
        assert offline.lookup("face_yolov8m.pt", "ultralytics")
        assert offline.status == "cached (offline)"


def test_unreachable_catalogue_without_cache_is_empty_not_fatal(
    file_server: FileServer, tmp_path: Path
) -> None:
    file_server.fail("/model-list.json", 500, times=None)
    with build_client() as client:
        catalogue = Catalogue(
            _settings(file_server.url_for("/model-list.json")), HttpSession(client, policy=FAST), tmp_path
        )
        assert catalogue.lookup("face_yolov8m.pt", "ultralytics") == []
    assert catalogue.status.startswith("unavailable")


def test_off_means_no_request(tmp_path: Path) -> None:
    with build_client() as client:
        catalogue = Catalogue(Settings(catalog_url=None), HttpSession(client, policy=FAST), tmp_path)
        assert catalogue.lookup("x.pth", None) == []
    assert catalogue.status == "off"


def test_verified_catalogue_reads_downloaded_models(tmp_path: Path) -> None:
    path = tmp_path / "downloaded_models.json"
    verified = VerifiedCatalogue(Settings(), path)
    assert verified.lookup("clip_l.safetensors", "text_encoders") == []  # no file yet
    record = {
        "name": "flux/clip_l.safetensors",
        "directory": "text_encoders",
        "path": "/comfy/models/text_encoders/flux/clip_l.safetensors",
        "url": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
        "source": "huggingface",
        "sha256": "AB" * 32,
        "size": 246144152,
        "script": "output/download_001_clip_l.sh",
        "time": "2026-01-01T00:00:00Z",
    }
    path.write_text(json.dumps({"schema": 1, "models": [record]}))
    (hit,) = verified.lookup("clip_l.safetensors", "clip")
    assert (hit.source, hit.sha256, hit.size) == ("verified", "ab" * 32, 246144152)
    assert verified.lookup("clip_l.safetensors", "vae") == []
    assert verified.lookup("clip_l_hidream.safetensors", "text_encoders") == []
