"""Source 3: Hugging Face, through an injected `huggingface_hub.HfApi`.

Hub search matches repo names only, so a file is found by listing repo trees (recursively:
repackaged repos nest files under `split_files/<folder>/`) and matching the exact file name. The
trees swept are the known publishers' repos most relevant to the name, then the repos that derived
queries find, then the remaining publishers' repos. Every tree and search is fetched at most once
per run. sha256 and size come from the LFS metadata of the tree entries.

`huggingface_hub` is heavy to import; it is imported here only when a source is used, and this
module itself is imported only when a Finder is created.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from comfyfixer.config import Settings
from comfyfixer.errors import SourceError, redact
from comfyfixer.folders import DEFAULT_DIRS, canonical
from comfyfixer.http import RequestCounter
from comfyfixer.models import Candidate, base_name
from comfyfixer.resolvers.decide import ESTABLISHED, TRUSTED, UNKNOWN
from comfyfixer.resolvers.names import accepted_names, search_name
from comfyfixer.resolvers.queries import (
    context_queries,
    context_relevance,
    derive_queries,
    is_generic,
    relevance,
)
from comfyfixer.resolvers.urls import hf_resolve_url

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)
SOURCE: Final = "huggingface"


@dataclass(frozen=True, slots=True)
class RepoFileInfo:
    path: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class Publishers:
    """Trusted Hub namespaces and the repos swept for exact file names (`publishers.json`)."""

    authors: frozenset[str]
    repos: tuple[str, ...]
    sweep_authors: tuple[str, ...] = ()

    @classmethod
    def load(cls, data: dict[str, Any] | None = None) -> Publishers:
        if data is None:
            text = resources.files("comfyfixer.resolvers").joinpath("publishers.json").read_text("utf-8")
            data = json.loads(text)
        authors = frozenset(str(a).lower() for a in data.get("authors", []))
        repos = tuple(str(r) for r in data.get("repos", []))
        sweep = tuple(str(a) for a in data.get("sweep_authors", []))
        return cls(authors, repos, sweep)

    def trusted(self, repo_id: str) -> bool:
        return repo_id.split("/", 1)[0].lower() in self.authors or repo_id.lower() in {
            r.lower() for r in self.repos
        }


@dataclass(slots=True)
class HubSearch:
    """What one model's Hub search saw."""

    candidates: list[Candidate] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    repos: list[str] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)


def split_files_folder(path: str) -> str | None:
    """The ComfyUI folder a repackaged repo files this under (`split_files/<folder>/...`), if any."""
    parts = path.split("/")
    if len(parts) > 2 and parts[0] == "split_files":
        key = canonical(parts[1])
        if key in DEFAULT_DIRS:
            return key
    return None


class _RepoMissing(Exception):
    """The repo does not exist or cannot be listed (memoised as empty for the run)."""


class HuggingFaceSource:
    """Search, tree listing and candidate building over an `HfApi` pointed at `settings.hf_endpoint`."""

    def __init__(
        self,
        settings: Settings,
        api: HfApi,
        *,
        counter: RequestCounter | None = None,
        publishers: Publishers | None = None,
        max_search_repos: int = 8,
        max_sweep_repos: int = 25,
        popular_downloads: int = 1000,
    ) -> None:
        self.settings = settings
        self.api = api
        self.counter = counter or RequestCounter()
        self.publishers = publishers or Publishers.load()
        self.max_search_repos = max_search_repos
        self.max_sweep_repos = max_sweep_repos
        self.popular_downloads = popular_downloads
        self.downloads: dict[str, int] = {}  # repo id -> downloads, as search results report them
        self._trees: dict[str, list[RepoFileInfo]] = {}
        self._searches: dict[tuple[str, int], list[str]] = {}
        self._publisher_repos: list[str] | None = None
        self._lock = threading.RLock()

    # -- wire ----------------------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one HfApi call; map its failures to SourceError (or _RepoMissing for absent repos)."""
        import httpx2
        from huggingface_hub import errors as hf_errors  # lazy: heavy import

        self.counter.add(SOURCE)
        try:
            return fn(*args, **kwargs)
        except (
            hf_errors.RepositoryNotFoundError,
            hf_errors.RevisionNotFoundError,
            hf_errors.HFValidationError,  # a repo id the Hub cannot even hold
        ) as exc:
            raise _RepoMissing(what) from exc
        except hf_errors.HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 404):
                raise _RepoMissing(what) from exc
            kind = (
                "rate limited"
                if status == 429
                else "server error"
                if status and status >= 500
                else "access refused"
                if status in (401, 403)
                else "failed"
            )
            message = redact(exc.server_message or str(exc).splitlines()[0], self.settings.secrets)
            raise SourceError(
                SOURCE,
                f"{what}: {kind} (HTTP {status}): {message}",
                status=status,
                auth_required=status == 403,
            ) from exc
        except (httpx2.TransportError, OSError) as exc:
            raise SourceError(SOURCE, f"{what}: {type(exc).__name__}: {redact(str(exc))}") from exc

    def search_repos(self, query: str, limit: int = 20) -> list[str]:
        """Repo ids whose name matches `query` (most downloaded first). Memoised per run."""
        key = (query.lower(), limit)
        with self._lock:
            if key in self._searches:
                return list(self._searches[key])
        try:
            found = self._call(
                f"search {query!r}",
                lambda: self._note_downloads(
                    self.api.list_models(search=query, limit=limit, sort="downloads")
                ),
            )
        except _RepoMissing:
            found = []
        with self._lock:
            self._searches[key] = list(found)
        return list(found)

    def publisher_repos(self) -> list[str]:
        """The listed publisher repos plus every repo of the sweep authors (listed once per run)."""
        with self._lock:
            if self._publisher_repos is not None:
                return self._publisher_repos
        repos = list(self.publishers.repos)
        known = {r.lower() for r in repos}
        for author in self.publishers.sweep_authors:
            try:
                listed = self._call(
                    f"repos of {author}",
                    lambda a=author: self._note_downloads(self.api.list_models(author=a, limit=1000)),
                )
            except (_RepoMissing, SourceError) as exc:
                # Not fatal: the listed repos and searches still run; the next run lists again.
                log.warning("huggingface: could not list the repos of %s: %s", author, exc)
                continue
            for repo_id in listed:
                if repo_id.lower() not in known:
                    known.add(repo_id.lower())
                    repos.append(repo_id)
        with self._lock:
            self._publisher_repos = repos
        return repos

    def _note_downloads(self, models: Iterable[Any]) -> list[str]:
        """The ids of listed repos, remembering their download counts (trust, sweep order)."""
        ids = []
        for m in models:
            ids.append(m.id)
            if isinstance(getattr(m, "downloads", None), int):
                with self._lock:
                    self.downloads[m.id] = m.downloads
        return ids

    def trust(self, candidate: Candidate) -> int:
        """2: a known publisher; 1: a repo popular enough to be established; 0: an unknown uploader."""
        if candidate.authoritative:
            return TRUSTED
        if self.downloads.get(candidate.repo or "", 0) >= self.popular_downloads:
            return ESTABLISHED
        return UNKNOWN

    def list_files(self, repo_id: str) -> list[RepoFileInfo]:
        """Every file of `repo_id` at `main`, recursively, with LFS sha256/size. Memoised; [] if missing."""
        from huggingface_hub.hf_api import RepoFile

        with self._lock:
            if repo_id in self._trees:
                return self._trees[repo_id]

        def fetch() -> list[RepoFileInfo]:
            out: list[RepoFileInfo] = []
            for entry in self.api.list_repo_tree(repo_id, recursive=True):
                if not isinstance(entry, RepoFile):
                    continue
                lfs = entry.lfs
                out.append(
                    RepoFileInfo(
                        path=entry.path,
                        size=(lfs.size if lfs is not None else entry.size),
                        sha256=(lfs.sha256.lower() if lfs is not None and lfs.sha256 else None),
                    )
                )
            return out

        try:
            files: list[RepoFileInfo] = self._call(f"tree of {repo_id}", fetch)
        except _RepoMissing:
            log.debug("huggingface: %s is missing or private", repo_id)
            files = []
        with self._lock:
            self._trees[repo_id] = files
        return files

    def candidate_for(self, repo_id: str, path: str) -> Candidate:
        """A candidate for one file of a repo, with the tree's sha256/size when the file is listed."""
        info = next((f for f in self.list_files(repo_id) if f.path == path), None)
        return Candidate(
            url=hf_resolve_url(self.settings.hf_endpoint, repo_id, path),
            filename=base_name(path),
            source=SOURCE,
            sha256=info.sha256 if info else None,
            size=info.size if info else None,
            repo=repo_id,
            path_in_repo=path,
            authoritative=self.publishers.trusted(repo_id),
            auth=SOURCE,
            directory_hint=split_files_folder(path),
            note=f"{repo_id}/{path}",
        )

    # -- search strategy -----------------------------------------------------------------------------
    def _matches_in(self, repo_id: str, wanted: tuple[str, ...]) -> list[Candidate]:
        files = self.list_files(repo_id)
        return [self.candidate_for(repo_id, f.path) for f in files if base_name(f.path).lower() in wanted]

    def _searched_repos(self, queries: list[str], seen: set[str], result: HubSearch) -> list[str]:
        """Repos the queries find that were not looked at yet, at most `max_search_repos`."""
        repos: list[str] = []
        for query in queries:
            if query in result.queries:
                continue
            result.queries.append(query)
            try:
                hits = self.search_repos(query)
            except SourceError as exc:
                result.errors.append(exc)
                continue
            repos.extend(r for r in hits if r not in seen and r not in repos)
            if len(repos) >= self.max_search_repos:
                break
        return repos[: self.max_search_repos]

    def find(
        self, file_name: str, *, extra_repos: tuple[str, ...] = (), context: list[str] | None = None
    ) -> HubSearch:
        """Every exact-name copy of `file_name` in the repos worth looking at. Never raises SourceError.

        `context` (the other models the workflow loads) ranks publisher repos and adds queries when the
        name alone finds no trusted copy: `qwen_3_06b_base` beside `anima-base-v1.0` is in `.../Anima`.
        """
        context = context or []
        result = HubSearch()
        wanted = accepted_names(file_name)
        file_name = search_name(file_name)  # a prompt stem is searched as its .safetensors file
        seen: set[str] = set()
        found: dict[str, Candidate] = {}

        def sweep(repos: list[str]) -> None:
            for repo_id in repos:
                if repo_id in seen:
                    continue
                seen.add(repo_id)
                result.repos.append(repo_id)
                try:
                    for c in self._matches_in(repo_id, wanted):
                        found.setdefault(c.url, c)
                except SourceError as exc:
                    result.errors.append(exc)

        generic = is_generic(file_name)
        # A generic name says nothing about a repo: only its workflow's other models can point at one.
        own = {r: 0 if generic else relevance(file_name, r) for r in self.publisher_repos()}
        near = {r: context_relevance(context, r) for r in own} if context else dict.fromkeys(own, 0)
        ranked = sorted(own, key=lambda r: (own[r], near[r]), reverse=True)
        sweep(list(extra_repos) + [r for r in ranked if own[r] > 0])
        if not any(c.authoritative for c in found.values()) and context:
            sweep(sorted((r for r in own if near[r] > 0 and r not in seen), key=lambda r: -near[r])[:8])
        own_queries, near_queries = derive_queries(file_name), context_queries(context)
        # A generic name is looked for where its workflow points first; its own name finds look-alikes.
        for queries in (near_queries, own_queries) if generic else (own_queries, near_queries):
            if any(c.authoritative for c in found.values()):
                break
            sweep(self._searched_repos(queries, seen, result))
        if not any(c.authoritative for c in found.values()):
            # Last resort: publisher repos no name or query pointed at. Trees fetched earlier in the run
            # cost nothing; new ones are capped per model, most downloaded first, so one hard model
            # cannot spend the Hub's rate limit (500 API calls per 5 minutes without a token).
            rest = sorted((r for r in ranked if r not in seen), key=lambda r: -near[r])
            with self._lock:
                cached = {r for r in rest if r in self._trees}
            fresh = sorted(
                (r for r in rest if r not in cached), key=lambda r: (-near[r], -self.downloads.get(r, 0))
            )
            sweep([r for r in rest if r in cached] + fresh[: self.max_sweep_repos])
        result.candidates = list(found.values())
        return result
