"""Source 2: catalogues. ComfyUI-Manager's `model-list.json`, and the files this tool verified before.

The Manager list is fetched from `settings.catalog_url` once per run, kept under
`<output>/cache/model-list.json` with its ETag/Last-Modified, revalidated with a conditional GET,
and used from the cache when the network fails. The verified catalogue is
`<output>/downloaded_models.json`, written by the download stage; it is re-read when it changes.
Both match on the exact file name and the ComfyUI folder.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit

from comfyfixer.config import Settings
from comfyfixer.errors import SourceError
from comfyfixer.folders import DEFAULT_DIRS, canonical
from comfyfixer.http import HttpSession
from comfyfixer.models import Candidate, base_name
from comfyfixer.resolvers.names import accepted_names
from comfyfixer.resolvers.urls import clean_url
from comfyfixer.state.atomic import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

CACHE_NAME = "model-list.json"
META_NAME = "model-list.meta.json"
VERIFIED_NAME = "downloaded_models.json"

# ComfyUI-Manager's `type` -> folder key, used when `save_path` is "default".
_TYPE_FOLDERS = {
    "checkpoint": "checkpoints",
    "checkpoints": "checkpoints",
    "unclip": "checkpoints",
    "text_encoders": "text_encoders",
    "clip": "text_encoders",
    "vae": "vae",
    "lora": "loras",
    "t2i-adapter": "controlnet",
    "t2i-style": "controlnet",
    "controlnet": "controlnet",
    "clip_vision": "clip_vision",
    "gligen": "gligen",
    "upscale": "upscale_models",
    "embedding": "embeddings",
    "embeddings": "embeddings",
    "unet": "diffusion_models",
    "diffusion_model": "diffusion_models",
}


def entry_folder(entry: dict[str, Any]) -> str | None:
    """The ComfyUI folder key a Manager entry installs into; None for pack-local files."""
    save_path = str(entry.get("save_path") or "default").replace("\\", "/").strip("/")
    if save_path == "default" or not save_path:
        kind = str(entry.get("type") or "").lower()
        return _TYPE_FOLDERS.get(kind, "etc")
    first = save_path.split("/", 1)[0]
    if first == "custom_nodes":
        return None
    return _key_for_path(save_path) or canonical(first)


def _key_for_path(save_path: str) -> str | None:
    """The registered folder key whose default directory holds `models/<save_path>` (longest wins):
    `xlabs/controlnets` is `xlabs_controlnets`, `ultralytics/bbox` is `ultralytics`."""
    path = f"models/{save_path}".lower() + "/"
    best: tuple[int, str] | None = None
    for key, dirs in DEFAULT_DIRS.items():
        for d in dirs:
            if path.startswith(d.lower() + "/") and (best is None or len(d) > best[0]):
                best = (len(d), key)
    return best[1] if best is not None else None


def entry_filename(entry: dict[str, Any]) -> str:
    name = str(entry.get("filename") or "")
    if not name or name == "<huggingface>":
        name = unquote(urlsplit(str(entry.get("url") or "")).path).rsplit("/", 1)[-1]
    return base_name(name)


def _folder_matches(wanted: str | None, found: str | None) -> bool:
    if wanted is None:
        return True
    return found is not None and canonical(wanted) == found



def _revalidation_headers(meta: dict[str, Any]) -> dict[str, str]:
    """Conditional-request headers from the cached copy's validators."""
    headers: dict[str, str] = {}
    if meta.get("etag"):
        headers["If-None-Match"] = str(meta["etag"])
    if meta.get("last_modified"):
        headers["If-Modified-Since"] = str(meta["last_modified"])
    return headers


class Catalogue:
    """ComfyUI-Manager's model list, cached on disk and loaded lazily once per run."""

    def __init__(self, settings: Settings, session: HttpSession | None, cache_dir: Path | None) -> None:
        self.settings = settings
        self.session = session
        self.cache_dir = cache_dir
        self._index: dict[str, list[dict[str, Any]]] | None = None
        self._lock = threading.Lock()
        self.status = "not loaded"  # fresh | revalidated | cached (offline) | off | unavailable: ...

    @classmethod
    def from_entries(cls, settings: Settings, entries: Iterable[dict[str, Any]]) -> Catalogue:
        """A catalogue built from entries in memory (the agent's tests, offline use)."""
        catalogue = cls(settings, None, None)
        catalogue._index = catalogue._build_index(entries)
        catalogue.status = "in memory"
        return catalogue

    @staticmethod
    def _build_index(entries: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        index: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            if isinstance(entry, dict) and entry.get("url"):
                index.setdefault(entry_filename(entry).lower(), []).append(entry)
        return index

    def _read_cache(self) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
        if self.cache_dir is None:
            return None, {}
        try:
            meta = json.loads((self.cache_dir / META_NAME).read_text(encoding="utf-8"))
            body = json.loads((self.cache_dir / CACHE_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None, {}
        if not isinstance(meta, dict) or meta.get("url") != self.settings.catalog_url:
            return None, {}
        models = body.get("models") if isinstance(body, dict) else None
        return (models if isinstance(models, list) else None), meta

    def _fetch(self) -> list[dict[str, Any]]:
        url = self.settings.catalog_url
        if url is None:
            self.status = "off"
            return []
        cached, meta = self._read_cache()
        if self.session is None:
            self.status = "cached (no network client)" if cached is not None else "unavailable"
            return cached or []
        headers = _revalidation_headers(meta) if cached is not None else {}
        try:
            response = self._get(self.session, url, headers)
            if response.status_code == 304 and cached is not None:
                self.status = "revalidated"
                return cached
            if response.status_code != 200:
                raise SourceError(
                    "catalogue", f"HTTP {response.status_code}", url=url, status=response.status_code
                )
            # GitHub raw serves it as text/plain, so the body is parsed whatever the type says.
            body = response.json()
            models = body.get("models") if isinstance(body, dict) else None
            if not isinstance(models, list):
                raise SourceError("catalogue", "no `models` list in the answer", url=url)
        except (SourceError, ValueError) as exc:
            if cached is not None:
                log.warning("catalogue: %s; using the cached copy", exc)
                self.status = "cached (offline)"
                return cached
            log.warning("catalogue unavailable: %s", exc)
            self.status = f"unavailable: {exc}"
            return []
        self._write_cache(url, response)
        self.status = "fresh"
        return models

    def _get(self, session: HttpSession, url: str, headers: dict[str, str]) -> httpx.Response:
        """GET the list, following at most three redirects, each to an allowed host."""
        response = session.request("GET", url, source="catalogue", headers=headers)
        hops = 0
        while response.status_code in (301, 302, 307, 308) and hops < 3:
            target = urljoin(url, response.headers.get("location", ""))
            if not self.settings.host_allowed(target, redirect=True):
                raise SourceError("catalogue", f"redirect to a host that is not allowed: {target}")
            response = session.request("GET", target, source="catalogue", headers=headers)
            hops += 1
        return response

    def _write_cache(self, url: str, response: httpx.Response) -> None:
        if self.cache_dir is None:
            return
        try:
            atomic_write_bytes(self.cache_dir / CACHE_NAME, response.content)
            atomic_write_json(
                self.cache_dir / META_NAME,
                {
                    "url": url,
                    "etag": response.headers.get("etag"),
                    "last_modified": response.headers.get("last-modified"),
                },
            )
        except OSError as exc:
            log.warning("catalogue cache not written: %s", exc)

    def _ensure(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            if self._index is None:
                self._index = self._build_index(self._fetch())
                log.info("catalogue: %d file names (%s)", len(self._index), self.status)
            return self._index

    def lookup(self, file_name: str, directory: str | None) -> list[Candidate]:
        """Entries whose file name is `file_name` (case-insensitive; a stem with a weights extension)
        and whose folder matches."""
        out: list[Candidate] = []
        index = self._ensure()
        entries = [e for wanted in accepted_names(file_name) for e in index.get(wanted, [])]
        for entry in entries:
            folder = entry_folder(entry)
            if not _folder_matches(directory, folder):
                continue
            url = clean_url(str(entry["url"]), self.settings)
            if url is None:
                continue
            out.append(
                Candidate(
                    url=url,
                    filename=entry_filename(entry),
                    source="catalogue",
                    directory_hint=folder,
                    note=f"ComfyUI-Manager catalogue: {entry.get('name') or ''}".rstrip(": "),
                )
            )
        return out


class VerifiedCatalogue:
    """Files this tool downloaded and verified in earlier runs (`downloaded_models.json`)."""

    def __init__(self, settings: Settings, path: Path | None) -> None:
        self.settings = settings
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._records: list[dict[str, Any]] = []

    def _load(self) -> list[dict[str, Any]]:
        if self.path is None:
            return []
        try:
            stat = self.path.stat()
        except OSError:
            return []
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._stamp:
            try:
                body = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("verified catalogue %s unreadable: %s", self.path, exc)
                body = {}
            models = body.get("models") if isinstance(body, dict) else None
            self._records = [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []
            self._stamp = stamp
        return self._records

    def lookup(self, file_name: str, directory: str | None) -> list[Candidate]:
        wanted = accepted_names(file_name)
        out: list[Candidate] = []
        for record in self._load():
            name = base_name(str(record.get("name") or ""))
            if name.lower() not in wanted or not record.get("url"):
                continue
            folder = record.get("directory")
            if (
                directory is not None
                and folder is not None
                and canonical(str(folder)) != canonical(directory)
            ):
                continue
            url = clean_url(str(record["url"]), self.settings)
            if url is None:
                continue
            size = record.get("size")
            sha = record.get("sha256")
            out.append(
                Candidate(
                    url=url,
                    filename=name,
                    source="verified",
                    sha256=str(sha).lower() if isinstance(sha, str) and sha else None,
                    size=size if isinstance(size, int) and size > 0 else None,
                    directory_hint=str(folder) if folder else None,
                    note=f"verified before by this tool (from {record.get('source') or '?'})",
                )
            )
        return out
