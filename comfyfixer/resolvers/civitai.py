"""Source 4: Civitai's REST API v1 (`settings.civitai_url`, token from CIVITAI_API_TOKEN).

Search matches model names (not file names), so derived queries find models and the exact file
name is matched in `modelVersions[].files[]`; the version that holds the file is kept, never
`modelVersions[0]` by default. A known hash goes to `by-hash` first. sha256 comes from
`files[].hashes.SHA256`; pickle/virus scan results travel with the candidate and a "Danger" verdict
rejects the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

from comfyfixer.config import Settings
from comfyfixer.errors import SourceError
from comfyfixer.http import HttpSession
from comfyfixer.models import Candidate, base_name
from comfyfixer.resolvers.names import accepted_names, search_name
from comfyfixer.resolvers.queries import civitai_queries
from comfyfixer.resolvers.urls import clean_url

log = logging.getLogger(__name__)
SOURCE: Final = "civitai"


@dataclass(slots=True)
class CivitaiSearch:
    """What one model's Civitai search saw."""

    candidates: list[Candidate] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)


# Civitai model (and file) types -> the ComfyUI folder they install into; evidence for a folder-less
# reference only (a "Checkpoint" may be a UNet-only file: a loader node's folder always wins).
TYPE_FOLDERS = {
    "LORA": "loras",
    "LoCon": "loras",
    "DoRA": "loras",
    "TextualInversion": "embeddings",
    "Checkpoint": "checkpoints",
    "VAE": "vae",
    "Controlnet": "controlnet",
    "Upscaler": "upscale_models",
    "MotionModule": "animatediff_models",
    "Hypernetwork": "hypernetworks",
}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


class CivitaiSource:
    """Thin, memoised access to the Civitai API plus exact-name candidate extraction."""

    def __init__(self, settings: Settings, session: HttpSession) -> None:
        self.settings = settings
        self.session = session
        self.api = settings.civitai_url.rstrip("/") + "/api/v1"

    def _headers(self) -> dict[str, str]:
        return (
            {"Authorization": f"Bearer {self.settings.civitai_token}"} if self.settings.civitai_token else {}
        )

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any | None:
        return self.session.get_json(
            f"{self.api}{path}", source=SOURCE, params=params, headers=self._headers()
        )

    def search(self, query: str, types: list[str] | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Models whose name/creator/hash/trigger words match `query` (first page)."""
        params: dict[str, Any] = {"query": query, "limit": limit}
        if types:
            params["types"] = list(types)
        body = self._get("/models", params)
        return _dicts(body.get("items")) if isinstance(body, dict) else []

    def model(self, model_id: int) -> dict[str, Any] | None:
        body = self._get(f"/models/{int(model_id)}")
        return body if isinstance(body, dict) else None

    def version(self, version_id: int) -> dict[str, Any] | None:
        body = self._get(f"/model-versions/{int(version_id)}")
        return body if isinstance(body, dict) else None

    def by_hash(self, file_hash: str) -> dict[str, Any] | None:
        """The model version holding a file with this hash (any Civitai hash type), or None."""
        body = self._get(f"/model-versions/by-hash/{file_hash.strip().upper()}")
        return body if isinstance(body, dict) else None

    def candidates_in(
        self,
        version: dict[str, Any],
        file_name: str,
        *,
        model: dict[str, Any] | None = None,
        rejected: list[str] | None = None,
    ) -> list[Candidate]:
        """Candidates for the files of `version` whose name equals `file_name` (case-insensitive)."""
        wanted = accepted_names(file_name)
        model_id = version.get("modelId") or (model or {}).get("id")
        model_name = (model or {}).get("name") or (version.get("model") or {}).get("name") or "?"
        out: list[Candidate] = []
        for f in _dicts(version.get("files")):
            name = str(f.get("name") or "")
            if base_name(name).lower() not in wanted:
                continue
            where = (
                f"civitai model {model_id} version {version.get('id')} ({model_name} / {version.get('name')})"
            )
            pickle, virus = f.get("pickleScanResult"), f.get("virusScanResult")
            if "Danger" in (pickle, virus):
                if rejected is not None:
                    rejected.append(
                        f"{where}: flagged dangerous by Civitai's scan (pickle {pickle}, virus {virus})"
                    )
                continue
            raw_url = f.get("downloadUrl") or (version.get("downloadUrl") if f.get("primary") else None)
            url = clean_url(str(raw_url), self.settings) if raw_url else None
            if url is None:
                if rejected is not None:
                    rejected.append(f"{where}: no download URL (archived or taken down)")
                continue
            hashes = f.get("hashes") if isinstance(f.get("hashes"), dict) else {}
            sha = hashes.get("SHA256") if isinstance(hashes, dict) else None
            size_kb = f.get("sizeKB")
            out.append(
                Candidate(
                    url=url,
                    filename=name,
                    source=SOURCE,
                    sha256=str(sha).lower() if sha else None,
                    size=round(float(size_kb) * 1024)
                    if isinstance(size_kb, (int, float)) and size_kb > 0
                    else None,
                    repo=f"civitai:{model_id}/{version.get('id')}",
                    auth=SOURCE,
                    directory_hint=TYPE_FOLDERS.get(str(f.get("type") or ""))
                    or TYPE_FOLDERS.get(
                        str((model or {}).get("type") or (version.get("model") or {}).get("type"))
                    ),
                    pickle_scan=str(pickle) if pickle else None,
                    virus_scan=str(virus) if virus else None,
                    note=where,
                )
            )
        return out

    def candidates_in_model(
        self,
        model: dict[str, Any],
        file_name: str,
        *,
        version_id: int | None = None,
        rejected: list[str] | None = None,
    ) -> list[Candidate]:
        """Exact-name candidates across a model's versions (only `version_id`'s when given and it has one)."""
        versions = _dicts(model.get("modelVersions"))
        if version_id is not None:
            preferred = [v for v in versions if v.get("id") == version_id]
            hits = [
                c for v in preferred for c in self.candidates_in(v, file_name, model=model, rejected=rejected)
            ]
            if hits:
                return hits
        return [c for v in versions for c in self.candidates_in(v, file_name, model=model, rejected=rejected)]

    def find(
        self, file_name: str, *, sha256: str | None = None, types: list[str] | None = None
    ) -> CivitaiSearch:
        """Exact-name candidates for `file_name`: by hash first, then by derived queries. Never raises.

        `types` narrows the search to Civitai model types (a prompt embedding is a TextualInversion)."""
        result = CivitaiSearch()
        found: dict[str, Candidate] = {}
        if sha256:
            try:
                version = self.by_hash(sha256)
            except SourceError as exc:
                result.errors.append(exc)
                version = None
            if version is not None:
                for c in self.candidates_in(version, file_name, rejected=result.rejected):
                    found.setdefault(c.url, c)
        if not found:
            for query in civitai_queries(search_name(file_name)):
                result.queries.append(query)
                try:
                    items = self.search(query, types)
                except SourceError as exc:
                    result.errors.append(exc)
                    continue
                for item in items:
                    for c in self.candidates_in_model(item, file_name, rejected=result.rejected):
                        found.setdefault(c.url, c)
                if found:
                    break  # one query's page already holds every upload that search can tell apart
        result.candidates = list(found.values())
        return result
