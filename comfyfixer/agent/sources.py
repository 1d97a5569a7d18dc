"""What the agent's tools need from the resolvers: the `Sources` Protocols (the real `Finder` satisfies
them). Any source may be None: disabled in this run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from comfyfixer.models import Candidate


class RepoFile(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int | None: ...
    @property
    def sha256(self) -> str | None: ...


class HubSource(Protocol):
    def search_repos(self, query: str, limit: int = ...) -> list[str]: ...
    def list_files(self, repo_id: str) -> Sequence[RepoFile]: ...
    def candidate_for(self, repo_id: str, path: str) -> Candidate: ...


class CivitaiSource(Protocol):
    def search(self, query: str, types: list[str] | None = ...) -> list[dict[str, Any]]: ...
    def version(self, version_id: int) -> dict[str, Any] | None: ...
    def candidates_in(
        self, version: dict[str, Any], file_name: str, *, model: dict[str, Any] | None = ...
    ) -> list[Candidate]: ...


class CatalogueSource(Protocol):
    def lookup(self, file_name: str, directory: str | None) -> list[Candidate]: ...


class Sources(Protocol):
    """The slice of `resolvers.Finder` the tools use; any attribute may be None (source disabled)."""

    @property
    def huggingface(self) -> HubSource | None: ...
    @property
    def civitai(self) -> CivitaiSource | None: ...
    @property
    def catalogue(self) -> CatalogueSource | None: ...
