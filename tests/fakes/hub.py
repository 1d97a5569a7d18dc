"""The Hugging Face Hub fake (apis.md §1 and §4.2): search, model info, tree, paths-info, resolve.

Owns the in-memory repos (`HubRepo`, `HubFile`) and the routes the real `huggingface_hub` client
calls. LFS files are served by a separate CDN origin (a `FileServer` on another port) through a
302 carrying `X-Repo-Commit`, `X-Linked-Etag: "<sha256>"` and `X-Linked-Size`; small git files are
served directly with their git sha1 as ETag. Error answers carry `X-Error-Code` as the Hub does.
Never any Xet signal (`X-Xet-Hash`, `xetHash`, `Link rel=xet-auth`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlencode

from tests.fakes.files import Blob, FileServer, content_disposition, serve_blob
from tests.fakes.server import Exchange, FakeServer, HeaderList, truthy

Gated = Literal[False, "auto", "manual"]
TEXT_SUFFIXES = (".md", ".json", ".txt", ".yaml", ".yml", ".py", ".gitattributes", ".cfg", ".toml")
SORT_KEYS = {
    "downloads": "downloads",
    "likes": "likes",
    "trendingScore": "trendingScore",
    "trending_score": "trendingScore",
    "createdAt": "createdAt",
    "created_at": "createdAt",
    "lastModified": "lastModified",
    "last_modified": "lastModified",
}


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    """The git blob id: what the Hub calls `oid`/`blobId` (for an LFS file: of its pointer)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class HubFile:
    path: str
    data: bytes
    lfs: bool

    def __post_init__(self) -> None:
        self.size = len(self.data)
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        pointer = lfs_pointer(self.sha256, self.size)
        self.pointer_size = len(pointer)
        self.git_sha1 = git_blob_sha1(pointer if self.lfs else self.data)

    @property
    def etag(self) -> str:
        """What the client caches the blob under: sha256 for LFS, git sha1 otherwise."""
        return self.sha256 if self.lfs else self.git_sha1

    def entry(self, expand: bool = False, commit: str = "") -> dict[str, Any]:
        """The tree / paths-info entry (`lfs.oid`, never `xetHash`)."""
        out: dict[str, Any] = {"type": "file", "oid": self.git_sha1, "size": self.size}
        if self.lfs:
            out["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        out["path"] = self.path
        if expand:
            out["lastCommit"] = {
                "id": commit,
                "title": f"Upload {self.path}",
                "date": "2024-08-02T10:05:40.000Z",
            }
            out["securityFileStatus"] = {"status": "safe", "filePath": self.path}
        return out

    def sibling(self, blobs: bool) -> dict[str, Any]:
        """The model-info sibling (`lfs.sha256` here: the key-name trap of §1.4)."""
        out: dict[str, Any] = {"rfilename": self.path}
        if blobs:
            out["blobId"] = self.git_sha1
            out["size"] = self.size
            if self.lfs:
                out["lfs"] = {"sha256": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return out


@dataclass
class HubRepo:
    id: str
    gated: Gated = False
    private: bool = False
    granted: set[str] = field(default_factory=set)  # tokens allowed into a gated/private repo
    downloads: int = 0
    likes: int = 0
    trending_score: int = 0
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    created_at: str = "2024-08-02T09:41:12.000Z"
    last_modified: str = "2024-08-02T10:05:40.000Z"
    files: dict[str, HubFile] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=dict)  # name -> 40-hex commit

    def __post_init__(self) -> None:
        self.revisions.setdefault("main", _sha1(f"{self.id}@main"))
        if not self.tags:
            self.tags = ["region:us"]
        self.files.setdefault(
            ".gitattributes", HubFile(".gitattributes", b"*.safetensors filter=lfs\n", False)
        )

    @property
    def author(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def sha(self) -> str:
        return self.revisions["main"]

    @property
    def object_id(self) -> str:
        return _sha1(self.id)[:24]

    def add_file(self, path: str, data: bytes, *, lfs: bool | None = None) -> HubFile:
        """Add a file; LFS unless it looks like a small text file (README, config)."""
        path = path.strip("/")
        if lfs is None:
            lfs = not path.lower().endswith(TEXT_SUFFIXES)
        hub_file = HubFile(path, data, lfs)
        self.files[path] = hub_file
        return hub_file

    def add_revision(self, name: str) -> str:
        self.revisions[name] = _sha1(f"{self.id}@{name}")
        return self.revisions[name]

    def commit_for(self, rev: str) -> str | None:
        if rev in self.revisions:
            return self.revisions[rev]
        return rev if rev in self.revisions.values() else None

    def directories(self) -> set[str]:
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        return dirs

    def summary(self, full: bool) -> dict[str, Any]:
        """A `/api/models` list item (keys and order as in samples/hf_models_search*.json)."""
        out: dict[str, Any] = {"_id": self.object_id, "id": self.id}
        if full:
            out.update(author=self.author, gated=self.gated, lastModified=self.last_modified)
        out.update(likes=self.likes, trendingScore=self.trending_score, private=self.private)
        if full:
            out["sha"] = self.sha
        out.update(downloads=self.downloads, tags=list(self.tags))
        if self.pipeline_tag:
            out["pipeline_tag"] = self.pipeline_tag
        if self.library_name:
            out["library_name"] = self.library_name
        out.update(createdAt=self.created_at, modelId=self.id)
        if full:
            out["siblings"] = [f.sibling(False) for f in self._sorted_files()]
        return out

    def info(self, commit: str, blobs: bool) -> dict[str, Any]:
        """The `/api/models/{id}` body (samples/hf_model_info_blobs.json)."""
        out: dict[str, Any] = {
            "_id": self.object_id,
            "id": self.id,
            "private": self.private,
            "tags": list(self.tags),
            "downloads": self.downloads,
            "likes": self.likes,
            "modelId": self.id,
            "author": self.author,
            "sha": commit,
            "lastModified": self.last_modified,
            "gated": self.gated,
            "disabled": False,
            "cardData": {},
        }
        if self.pipeline_tag:
            out["pipeline_tag"] = self.pipeline_tag
        if self.library_name:
            out["library_name"] = self.library_name
        out["siblings"] = [f.sibling(blobs) for f in self._sorted_files()]
        out.update(spaces=[], createdAt=self.created_at, usedStorage=sum(f.size for f in self.files.values()))
        return out

    def _sorted_files(self) -> list[HubFile]:
        return [self.files[p] for p in sorted(self.files)]

    def tree_entries(self, base: str, recursive: bool, expand: bool, commit: str) -> list[dict[str, Any]]:
        prefix = f"{base}/" if base else ""
        entries: list[tuple[str, dict[str, Any]]] = []
        for d in self.directories():
            if d.startswith(prefix) and (recursive or "/" not in d[len(prefix) :]):
                entries.append(
                    (d, {"type": "directory", "oid": _sha1(f"{self.id}:{commit}:{d}"), "size": 0, "path": d})
                )
        for path, f in self.files.items():
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :]):
                entries.append((path, f.entry(expand, commit)))
        return [e for _, e in sorted(entries, key=lambda t: t[0])]


class FakeHub(FakeServer):
    """A Hugging Face Hub on 127.0.0.1 with its CDN on another port (`hub.cdn`, started with it).

    `tokens`: the valid tokens (None: any bearer token is a valid user). An unknown token gets
    `401 Invalid credentials in Authorization header`, as on the real Hub.
    """

    name = "hub"

    def __init__(
        self,
        cdn: FileServer | None = None,
        *,
        tokens: Iterable[str] | None = None,
        tree_page_size: int = 1000,
        models_page_size: int = 1000,
        anonymous_missing_code: bool = True,
    ) -> None:
        super().__init__()
        self._own_cdn = cdn is None
        self.cdn = cdn if cdn is not None else FileServer()
        self.cdn.name = "hub-cdn"
        self.tokens = set(tokens) if tokens is not None else None
        self.tree_page_size = tree_page_size
        self.models_page_size = models_page_size
        # The real Hub sends no X-Error-Code on the anonymous 401 for a missing repo, but over http://
        # huggingface_hub then raises a bare HfHubHTTPError (apis.md §1.1); False imitates the Hub exactly.
        self.anonymous_missing_code = anonymous_missing_code
        self.repos: dict[str, HubRepo] = {}
        self.renamed: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeHub:
        if self._own_cdn:
            self.cdn.start()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        if self._own_cdn:
            self.cdn.stop()

    # -- content ---------------------------------------------------------------------------
    def add_repo(self, repo_id: str, **kwargs: Any) -> HubRepo:
        repo = HubRepo(repo_id, **kwargs)
        self.repos[repo_id.lower()] = repo
        return repo

    def repo(self, repo_id: str) -> HubRepo | None:
        return self.repos.get(repo_id.lower())

    def add_file(self, repo_id: str, path: str, data: bytes, *, lfs: bool | None = None) -> HubFile:
        """Add a file (creating the repo if needed) and publish its LFS blob on the CDN."""
        repo = self.repo(repo_id) or self.add_repo(repo_id)
        hub_file = repo.add_file(path, data, lfs=lfs)
        if hub_file.lfs:
            # The CDN's own ETag is not the sha256 (on the real one it is the Xet hash).
            self.cdn.blobs[self.cdn_path(hub_file)] = Blob(
                data=data, filename=path.rsplit("/", 1)[-1], etag=hashlib.sha256(b"xet" + data).hexdigest()
            )
        return hub_file

    def rename(self, old_id: str, new_id: str) -> None:
        """Old repo ids answer a relative 307 to the new id (API and resolve)."""
        self.renamed[old_id.lower()] = new_id

    @staticmethod
    def cdn_path(hub_file: HubFile) -> str:
        return f"/blobs/{hub_file.sha256}"

    def resolve_url(self, repo_id: str, path: str, revision: str = "main") -> str:
        return f"{self.url}/{repo_id}/resolve/{quote(revision, safe='')}/{quote(path)}"

    def rate_limit(self, pattern: str, *, times: int = 1, bucket: str = "api", reset: int = 0) -> None:
        """429 with `RateLimit: "<bucket>";r=0;t=<reset>` (huggingface_hub sleeps reset+1 s, then retries)."""
        self.fail(
            pattern,
            429,
            times=times,
            headers={
                "RateLimit": f'"{bucket}";r=0;t={reset}',
                "RateLimit-Policy": f'"fixed window";"{bucket}";q=500;w=300',
            },
            body={"error": "You have exceeded our hourly quotas for action: api. Retry later."},
        )

    # -- routing ---------------------------------------------------------------------------
    def handle(self, ex: Exchange) -> None:
        segs = [unquote(s) for s in ex.raw_path.split("/")[1:]]
        if segs[:2] == ["api", "models"]:
            if len(segs) == 2 or (len(segs) == 3 and segs[2] == ""):
                self._search(ex)
                return
            if len(segs) >= 4:
                self._api_repo(ex, f"{segs[2]}/{segs[3]}", segs[4:])
                return
        elif len(segs) >= 5 and segs[2] == "resolve":
            self._resolve(ex, f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:]))
            return
        elif len(segs) >= 5 and segs[2] == "blob" and self.repo(f"{segs[0]}/{segs[1]}") is not None:
            # The browsable page of a file: HTML, the classic "saved a web page as the model" trap.
            title = "/".join(segs[4:])
            ex.reply(
                200,
                f"<!DOCTYPE html><html><head><title>{title}</title></head><body>{title}</body></html>",
                self._limits("pages"),
                content_type="text/html; charset=utf-8",
            )
            return
        self._error(ex, 404, "Sorry, we can't find the page you are looking for.", None, api=True)

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _limits(bucket: str) -> HeaderList:
        return [
            ("RateLimit", f'"{bucket}";r=499;t=300'),
            ("RateLimit-Policy", f'"fixed window";"{bucket}";q=500;w=300'),
        ]

    def _error(
        self,
        ex: Exchange,
        status: int,
        message: str,
        code: str | None,
        *,
        api: bool,
        extra: HeaderList | None = None,
    ) -> None:
        headers: HeaderList = [("X-Error-Message", message), *(extra or [])]
        if code:
            headers.insert(0, ("X-Error-Code", code))
        headers += self._limits("api" if api else "resolvers")
        if api:
            ex.json(status, {"error": message}, headers)
        else:
            ex.reply(status, message, headers)

    def _token(self, ex: Exchange) -> str | None:
        auth = ex.header("authorization") or ""
        parts = auth.split()
        return parts[1] if len(parts) == 2 and parts[0].lower() == "bearer" else None

    def _lookup(self, ex: Exchange, repo_id: str, *, api: bool, for_download: bool) -> HubRepo | None:
        """The repo if this caller may see it; otherwise the Hub's error is sent and None returned."""
        token = self._token(ex)
        if token is not None and self.tokens is not None and token not in self.tokens:
            self._error(ex, 401, "Invalid credentials in Authorization header", None, api=api)
            return None
        repo = self.repo(repo_id)
        if repo is None or (repo.private and token not in repo.granted):
            if token is None:
                code = "RepoNotFound" if self.anonymous_missing_code else None
                self._error(ex, 401, "Invalid username or password.", code, api=api)
            else:
                self._error(ex, 404, "Repository not found", "RepoNotFound", api=api)
            return None
        if for_download and repo.gated and token not in repo.granted:
            if token is None:
                msg = (
                    f"Access to model {repo.id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in."
                )
                self._error(ex, 401, msg, "GatedRepo", api=api)
            else:
                msg = (
                    f"Access to model {repo.id} is restricted and you are not in the authorized list. "
                    f"Visit https://huggingface.co/{repo.id} to ask for access."
                )
                self._error(ex, 403, msg, "GatedRepo", api=api)
            return None
        return repo

    def _renamed(self, ex: Exchange, repo_id: str, old_prefix: str, new_prefix: str) -> bool:
        new_id = self.renamed.get(repo_id.lower())
        if new_id is None or self.repo(repo_id) is not None:
            return False
        location = ex.raw_path.replace(old_prefix, new_prefix.replace("{id}", new_id), 1)
        if ex.record.query:
            location += "?" + ex.record.query
        ex.reply(307, f"Moved to {location}", [("Location", location)])
        return True

    def _commit(self, ex: Exchange, repo: HubRepo, rev: str, *, api: bool) -> str | None:
        commit = repo.commit_for(rev)
        if commit is None:
            self._error(ex, 404, f"Invalid rev id: {rev}", "RevisionNotFound", api=api)
        return commit

    # -- /api/models -----------------------------------------------------------------------
    def _search(self, ex: Exchange) -> None:
        if ex.method != "GET":
            ex.reply(405, "method not allowed")
            return
        full = ex.flag("full")
        expand = ex.params("expand")
        if full and expand:
            self._error(ex, 400, "expand cannot be combined with full", None, api=True)
            return
        repos = [repo for repo in self.repos.values() if self._listed(ex, repo)]
        sort = SORT_KEYS.get(ex.param("sort") or "")
        if sort:
            repos.sort(key=lambda r: r.summary(True)[sort], reverse=True)
        try:
            limit = int(ex.param("limit") or self.models_page_size)
            offset = int(ex.param("cursor") or 0)
        except ValueError:
            self._error(ex, 400, "Invalid limit or cursor", None, api=True)
            return
        page_size = max(1, min(limit, self.models_page_size))
        page = repos[offset : offset + page_size]
        items = []
        for repo in page:
            if expand:
                record = repo.summary(True) | {"config": {}, "cardData": {}}
                items.append(
                    {"_id": repo.object_id, "id": repo.id} | {k: record[k] for k in expand if k in record}
                )
            else:
                items.append(repo.summary(full))
        headers = self._limits("api")
        if offset + page_size < len(repos):
            headers.append(("Link", f'<{self._next_url(ex, "/api/models", offset + page_size)}>; rel="next"'))
        ex.json(200, items, headers)

    @staticmethod
    def _listed(ex: Exchange, repo: HubRepo) -> bool:
        """Whether a repo passes the search filters (public, search, author, tags, pipeline, gated)."""
        search = (ex.param("search") or "").lower()
        author = (ex.param("author") or "").lower()
        filters = [f for raw in ex.params("filter") for f in raw.split(",") if f]
        pipeline = ex.param("pipeline_tag")
        gated = ex.param("gated")
        tags = set(repo.tags) | {t for t in (repo.library_name, repo.pipeline_tag) if t}
        if repo.private or (search and search not in repo.id.lower()):
            return False
        if (author and repo.author.lower() != author) or any(f not in tags for f in filters):
            return False
        if pipeline and repo.pipeline_tag != pipeline:
            return False
        return gated is None or bool(repo.gated) == truthy(gated)

    @staticmethod
    def _next_url(ex: Exchange, raw_path: str, cursor: int) -> str:
        query = [
            (k, v)
            for k, vs in parse_qs(ex.record.query, keep_blank_values=True).items()
            for v in vs
            if k != "cursor"
        ]
        query.append(("cursor", str(cursor)))
        return f"{ex.base_url}{raw_path}?{urlencode(query)}"

    # -- /api/models/{id}/... --------------------------------------------------------------
    def _api_repo(self, ex: Exchange, repo_id: str, rest: list[str]) -> None:
        if self._renamed(ex, repo_id, f"/api/models/{repo_id}", "/api/models/{id}"):
            return
        kind = rest[0] if rest else ""
        if kind in ("", "revision"):
            repo = self._lookup(ex, repo_id, api=True, for_download=False)
            if repo is None:
                return
            commit = self._commit(ex, repo, rest[1] if len(rest) > 1 else "main", api=True)
            if commit is None:
                return
            body = repo.info(commit, ex.flag("blobs"))
            if expand := ex.params("expand"):
                body = {"_id": repo.object_id, "id": repo.id} | {k: body[k] for k in expand if k in body}
            ex.json(200, body, self._limits("api"))
        elif kind == "tree" and len(rest) >= 2:
            repo = self._lookup(ex, repo_id, api=True, for_download=False)
            if repo is not None:
                self._tree(ex, repo, rest[1], "/".join(rest[2:]).strip("/"))
        elif kind == "paths-info" and len(rest) >= 2 and ex.method == "POST":
            repo = self._lookup(ex, repo_id, api=True, for_download=False)
            if repo is not None:
                self._paths_info(ex, repo, rest[1])
        elif kind == "auth-check":
            if self._lookup(ex, repo_id, api=True, for_download=True) is not None:
                ex.json(200, {}, self._limits("api"))
        else:
            self._error(ex, 404, "Not Found", None, api=True)

    def _tree(self, ex: Exchange, repo: HubRepo, rev: str, path: str) -> None:
        commit = self._commit(ex, repo, rev, api=True)
        if commit is None:
            return
        if path and path not in repo.directories():
            self._error(ex, 404, f'{path} does not exist on "{rev}"', "EntryNotFound", api=True)
            return
        expand = ex.flag("expand")
        entries = repo.tree_entries(path, ex.flag("recursive"), expand, commit)
        size = 50 if expand else self.tree_page_size
        offset = int(ex.param("cursor") or 0)
        headers = self._limits("api")
        if offset + size < len(entries):
            headers.append(("Link", f'<{self._next_url(ex, ex.raw_path, offset + size)}>; rel="next"'))
        ex.json(200, entries[offset : offset + size], headers)

    def _paths_info(self, ex: Exchange, repo: HubRepo, rev: str) -> None:
        commit = self._commit(ex, repo, rev, api=True)
        if commit is None:
            return
        ctype = (ex.header("content-type") or "").lower()
        if "json" in ctype:
            payload = json.loads(ex.body or b"{}")
            paths = list(payload.get("paths", []))
            expand = truthy(str(payload.get("expand", "false")))
        else:
            form = parse_qs(ex.body.decode(), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = truthy((form.get("expand") or ["false"])[0])
        dirs = repo.directories()
        out: list[dict[str, Any]] = []
        for raw in paths:
            p = raw.strip("/")
            if p in repo.files:
                out.append(repo.files[p].entry(expand, commit))
            elif p in dirs:
                out.append(
                    {"type": "directory", "oid": _sha1(f"{repo.id}:{commit}:{p}"), "size": 0, "path": p}
                )
        ex.json(200, out, self._limits("api"))

    # -- /{id}/resolve/{rev}/{path} --------------------------------------------------------
    def _resolve(self, ex: Exchange, repo_id: str, rev: str, path: str) -> None:
        if ex.method not in ("GET", "HEAD"):
            ex.reply(405, "method not allowed")
            return
        if self._renamed(ex, repo_id, f"/{repo_id}/", "/{id}/"):
            return
        repo = self._lookup(ex, repo_id, api=False, for_download=True)
        if repo is None:
            return
        commit = self._commit(ex, repo, rev, api=False)
        if commit is None:
            return
        hub_file = repo.files.get(path)
        if hub_file is None:
            self._error(
                ex, 404, "Entry not found", "EntryNotFound", api=False, extra=[("X-Repo-Commit", commit)]
            )
            return
        name = path.rsplit("/", 1)[-1]
        common: HeaderList = [("X-Repo-Commit", commit), *self._limits("resolvers")]
        inm = ex.header("if-none-match")
        if inm and hub_file.etag in inm:
            ex.reply(304, b"", [*common, ("ETag", f'"{hub_file.etag}"')])
            return
        if hub_file.lfs:
            disposition = content_disposition(name, inline=True)
            query = urlencode(
                {
                    "response-content-disposition": disposition,
                    "Expires": "1763730000",
                    "Signature": _sha1(f"{commit}{path}")[:16],
                    "Key-Pair-Id": "FAKEKEYPAIR",
                }
            )
            location = f"{self.cdn.url}{self.cdn_path(hub_file)}?{query}"
            ex.reply(
                302,
                f"Found. Redirecting to {location}",
                [
                    ("Location", location),
                    *common,
                    ("X-Linked-Size", str(hub_file.size)),
                    ("X-Linked-Etag", f'"{hub_file.sha256}"'),
                    ("Accept-Ranges", "bytes"),
                ],
            )
            return
        blob = Blob(
            data=hub_file.data,
            filename=name,
            etag=hub_file.git_sha1,
            content_type="text/plain; charset=utf-8",
        )
        serve_blob(ex, blob, common, disposition=content_disposition(name, inline=True))
