"""The ledger: every file a tool showed in one conversation, by id, URL and (repo, path).

It is what "appeared in a tool result" means. Each file whose name equals the one looked for gets a
short id (`f1`, `f2`, …); the agent's final answer may only pick files from here, which is how an
invented URL is caught.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from comfyfixer.agent.sources import RepoFile
from comfyfixer.models import Candidate, base_name

# A Hub file URL on any host (a model writes huggingface.co for a mirror too): owner/name/resolve/rev/path
_HUB_FILE_URL = re.compile(r"^/([^/]+/[^/]+)/(?:resolve|blob|raw)/[^/]+/(.+)$")


@dataclass
class GroundedFile:
    """A file a tool result (or the direct search) showed, that the final answer may pick."""

    id: str
    file_name: str
    source: str
    candidate: Candidate | None = None  # known already (catalogue, Civitai, prior search)
    repo_id: str | None = None  # a Hugging Face file, turned into a Candidate only when chosen
    path: str | None = None
    size: int | None = None
    sha256: str | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "file": self.file_name, "source": self.source}
        if self.repo_id:
            out["repo_id"] = self.repo_id
        if self.path and self.path != self.file_name:
            out["path"] = self.path
        if self.candidate is not None:
            out["url"] = self.candidate.url
            if self.candidate.repo and not self.repo_id:
                out["repo"] = self.candidate.repo
        if self.size:
            out["size"] = self.size
        if self.sha256:
            out["sha256"] = self.sha256
        return out


def hub_file_of_url(url: str) -> tuple[str, str] | None:
    """(repo id, path) of a Hugging Face `resolve`/`blob` URL, whatever its host; None otherwise."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    match = _HUB_FILE_URL.match(parts.path)
    if match is None:
        return None
    return match.group(1), unquote(match.group(2))


def _url_key(url: str) -> str:
    """A URL without scheme, query and fragment: how a model's copy of a shown URL is matched to it."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    return f"{(parts.hostname or '').lower()}{unquote(parts.path).rstrip('/')}"


class Ledger:
    """Grounded files by id, URL and (repo, path): what 'appeared in a tool result' means."""

    def __init__(self) -> None:
        self.files: dict[str, GroundedFile] = {}
        self._by_url: dict[str, str] = {}
        self._by_repo_path: dict[tuple[str, str], str] = {}

    def _next_id(self) -> str:
        return f"f{len(self.files) + 1}"

    def add_candidate(self, c: Candidate) -> GroundedFile:
        known = self._by_url.get(c.url)
        if known:
            return self.files[known]
        entry = GroundedFile(
            id=self._next_id(),
            file_name=base_name(c.filename),
            source=c.source,
            candidate=c,
            repo_id=c.repo if c.source == "huggingface" else None,
            path=c.path_in_repo,
            size=c.size,
            sha256=c.sha256,
        )
        self.files[entry.id] = entry
        self._by_url[c.url] = entry.id
        if c.repo and c.path_in_repo:
            self._by_repo_path[(c.repo.lower(), c.path_in_repo)] = entry.id
        return entry

    def add_hub_file(self, repo_id: str, f: RepoFile) -> GroundedFile:
        key = (repo_id.lower(), f.path)
        known = self._by_repo_path.get(key)
        if known:
            return self.files[known]
        entry = GroundedFile(
            id=self._next_id(),
            file_name=base_name(f.path),
            source="huggingface",
            repo_id=repo_id,
            path=f.path,
            size=f.size,
            sha256=f.sha256,
        )
        self.files[entry.id] = entry
        self._by_repo_path[key] = entry.id
        return entry

    def by_id(self, file_id: str) -> GroundedFile | None:
        return self.files.get(file_id.strip())

    def by_url(self, url: str) -> GroundedFile | None:
        """The file shown at this URL: exactly, up to query/scheme, or as a Hub file of a listed repo."""
        known = self._by_url.get(url.strip())
        if known:
            return self.files[known]
        key = _url_key(url)
        for entry_id, entry in self.files.items():
            if entry.candidate is not None and _url_key(entry.candidate.url) == key:
                return self.files[entry_id]
        hub_file = hub_file_of_url(url)
        return self.by_repo_path(*hub_file) if hub_file else None

    def by_name(self, name: str, repo_id: str | None = None) -> list[GroundedFile]:
        """Files shown with this base name (case-insensitive), optionally only those of one repo."""
        wanted = base_name(name).lower()
        repo = (repo_id or "").strip().lower()
        return [
            f
            for f in self.files.values()
            if f.file_name.lower() == wanted
            and (not repo or (f.repo_id or (f.candidate.repo if f.candidate else "") or "").lower() == repo)
        ]

    def by_repo_path(self, repo_id: str, path: str) -> GroundedFile | None:
        known = self._by_repo_path.get((repo_id.strip().lower(), path.strip().lstrip("/")))
        return self.files[known] if known else None
