"""The Civitai fake (apis.md §2 and §4.3): REST v1 search/lookup and the download redirect.

Owns `CivitaiModel` / `CivitaiVersion` / `CivitaiFile` and the routes: `GET /api/v1/models`
(query over model name, creator, trigger words and hashes — never file names; cursor paging),
`/api/v1/models/{id}`, `/api/v1/model-versions/{id}`, `/api/v1/model-versions/by-hash/{hash}`,
and `GET|HEAD /api/download/models/{versionId}` → 401 JSON / 307 login page / 307 to object
storage (a `FileServer` on another port, `civitai.storage`) that serves the bytes with Range.
`sizeKB*1024` is the served byte count and `hashes.SHA256` the upper-case sha256 of those bytes.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from tests.fakes.files import LOGIN_PAGE, FileServer
from tests.fakes.server import Exchange, FakeServer, HeaderList, truthy

BROWSER_UA = re.compile(r"mozilla|chrome|safari|firefox|opera|edge", re.IGNORECASE)
PUBLIC_CACHE: HeaderList = [
    ("Cache-Control", "public, s-maxage=300, stale-while-revalidate=150"),
    ("Access-Control-Allow-Origin", "*"),
]
NO_STORE: HeaderList = [("Cache-Control", "no-store, max-age=0"), ("Access-Control-Allow-Origin", "*")]
KEEP_UPLOADED_NAME = {"LORA", "LoCon", "DoRA"}
OVERLOADED = "Model search is temporarily overloaded — please retry."
LOGIN_REQUIRED = "The creator of this asset requires you to be logged in to download it"
SORTS = {
    "Most Downloaded": lambda m: -m.download_count,
    "Highest Rated": lambda m: -m.thumbs_up,
    "Newest": lambda m: -m.id,
}


def camel_words(text: str) -> str:
    """`WAI-illustrious-SDXL` → `waiIllustriousSDXL`: first word lower-cased, the others capitalised."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", text) if w]
    if not words:
        return ""
    return words[0].lower() + "".join(w[0].upper() + w[1:] for w in words[1:])


def download_filename(
    model_name: str, model_type: str, version_name: str, uploaded: str, trained_words: list[str]
) -> str:
    """Civitai's `getDownloadFilename()`: what `files[].name` and Content-Disposition carry."""
    ext = uploaded.rsplit(".", 1)[-1] if "." in uploaded else "safetensors"
    if model_type in KEEP_UPLOADED_NAME:
        return uploaded
    if model_type == "TextualInversion" and trained_words:
        return f"{trained_words[0]}.{ext}"
    return f"{camel_words(model_name)}_{re.sub(r'[^A-Za-z0-9]', '', version_name)}.{ext}"


def file_hashes(data: bytes, *, sha256: bool = True) -> dict[str, str]:
    """The six Civitai hash types, upper-case hex. BLAKE3/AutoV1/AutoV3 are shape-correct stand-ins."""
    full = hashlib.sha256(data).hexdigest().upper()
    out = {
        "AutoV1": hashlib.sha256(data[:0x10000]).hexdigest()[:8].upper(),
        "AutoV2": full[:10],
        "SHA256": full,
        "CRC32": f"{zlib.crc32(data) & 0xFFFFFFFF:08X}",
        "BLAKE3": hashlib.blake2b(data, digest_size=32).hexdigest().upper(),
        "AutoV3": hashlib.sha256(b"v3" + data).hexdigest()[:12].upper(),
    }
    if not sha256:  # not computed yet (fresh upload): the derived hashes are missing too
        for key in ("SHA256", "AutoV2", "AutoV3"):
            del out[key]
    return out


@dataclass
class CivitaiFile:
    id: int
    data: bytes
    name: str  # the download filename (files[].name)
    type: str = "Model"
    primary: bool = True
    format: str = "SafeTensor"
    size: str | None = None  # full | pruned
    fp: str | None = None
    hashes: dict[str, str] = field(default_factory=dict)
    pickle_scan: str = "Success"
    virus_scan: str = "Success"
    storage_key: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    def json(self, version_id: int, base: str, *, list_mode: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "sizeKB": len(self.data) / 1024,
            "name": self.name,
            "type": self.type,
            "pickleScanResult": self.pickle_scan,
            "pickleScanMessage": "No Pickle imports"
            if self.pickle_scan == "Success"
            else "Dangerous import detected",
            "virusScanResult": self.virus_scan,
            "virusScanMessage": None,
            "scannedAt": "2024-08-09T13:51:40.330Z",
            "metadata": {"format": self.format, "size": self.size, "fp": self.fp},
            "hashes": dict(self.hashes),
        }
        url = f"{base}/api/download/models/{version_id}"
        if not self.primary:
            params = {"type": self.type, "format": self.format}
            params |= {k: v for k, v in (("size", self.size), ("fp", self.fp)) if v}
            url += "?" + urlencode(params, quote_via=quote)
        # The list endpoint has `primary: true` or no key; the version endpoint a bool (§2.2).
        if self.primary or not list_mode:
            out["primary"] = self.primary
        out["downloadUrl"] = url
        return out


@dataclass
class CivitaiVersion:
    id: int
    model: CivitaiModel
    name: str
    base_model: str = "SDXL 1.0"
    trained_words: list[str] = field(default_factory=list)
    status: str = "Published"
    published_at: str = "2024-08-09T14:02:11.871Z"
    require_auth: bool = False
    download_error: tuple[int, dict[str, Any]] | None = None  # e.g. (410, {"error": "Model archived, ..."})
    files: list[CivitaiFile] = field(default_factory=list)
    download_count: int = 0

    @property
    def primary_file(self) -> CivitaiFile | None:
        return next((f for f in self.files if f.primary), None)

    @property
    def listed(self) -> bool:
        return self.status == "Published" and self.primary_file is not None

    def common(self, base: str, list_mode: bool) -> dict[str, Any]:
        archived = self.model.mode in ("Archived", "TakenDown")
        out: dict[str, Any] = {}
        if not archived:
            out["files"] = [f.json(self.id, base, list_mode=list_mode) for f in self.files]
        if self.model.mode != "TakenDown":
            out["images"] = [
                {
                    "url": f"https://image.civitai.com/fake/{self.id}/width=450/{self.id}.jpeg",
                    "nsfwLevel": 1,
                    "width": 832,
                    "height": 1216,
                    "hash": "U9Fr5Y~q00IU00Rj",
                    "type": "image",
                }
            ]
        if not archived:
            out["downloadUrl"] = f"{base}/api/download/models/{self.id}"
        return out

    def list_json(self, index: int, base: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "index": index,
            "name": self.name,
            "baseModel": self.base_model,
            "baseModelType": "Standard",
            "publishedAt": self.published_at,
            "availability": "Public",
            "nsfwLevel": 1,
            "description": None,
            "trainedWords": list(self.trained_words),
            "stats": {"downloadCount": self.download_count, "thumbsUpCount": 10, "thumbsDownCount": 0},
            "supportsGeneration": False,
            **self.common(base, list_mode=True),
        }

    def json(self, base: str) -> dict[str, Any]:
        """The `/api/v1/model-versions/{id}` body (samples/civitai_model_version.json)."""
        model: dict[str, Any] = {
            "name": self.model.name,
            "type": self.model.type,
            "nsfw": self.model.nsfw,
            "poi": False,
        }
        if self.model.mode:
            model["mode"] = self.model.mode
        return {
            "id": self.id,
            "modelId": self.model.id,
            "name": self.name,
            "nsfwLevel": 1,
            "createdAt": self.published_at,
            "updatedAt": self.published_at,
            "status": self.status,
            "publishedAt": self.published_at,
            "trainedWords": list(self.trained_words),
            "trainingStatus": None,
            "trainingDetails": None,
            "baseModel": self.base_model,
            "baseModelType": "Standard",
            "description": None,
            "uploadType": "Created",
            "usageControl": "Download",
            "air": f"urn:air:sdxl:{self.model.type.lower()}:civitai:{self.model.id}@{self.id}",
            "stats": {"downloadCount": self.download_count, "thumbsUpCount": 10},
            "model": model,
            **self.common(base, list_mode=False),
        }


@dataclass
class CivitaiModel:
    id: int
    name: str
    type: str = "Checkpoint"
    creator: str = "someone"
    tags: list[str] = field(default_factory=list)
    nsfw: bool = False
    mode: str | None = None  # None | "Archived" | "TakenDown"
    download_count: int = 1000
    thumbs_up: int = 100
    versions: list[CivitaiVersion] = field(default_factory=list)

    def search_text(self) -> str:
        words = [w for v in self.versions for w in v.trained_words]
        return " ".join([self.name, self.creator, *words]).lower()

    def hash_values(self) -> set[str]:
        return {h for v in self.versions for f in v.files for h in f.hashes.values()}

    def json(self, base: str) -> dict[str, Any]:
        """A `/api/v1/models` item (samples/civitai_models_search.json)."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": f"<p>{self.name}</p>",
            "allowNoCredit": True,
            "allowCommercialUse": "{Image,RentCivit}",
            "allowDerivatives": True,
            "allowDifferentLicense": True,
            "type": self.type,
            "minor": False,
            "sfwOnly": False,
            "poi": False,
            "nsfw": self.nsfw,
            "nsfwLevel": 31 if self.nsfw else 1,
            "availability": "Public",
            "cosmetic": None,
            "supportsGeneration": False,
            "stats": {
                "downloadCount": self.download_count,
                "thumbsUpCount": self.thumbs_up,
                "thumbsDownCount": 0,
                "commentCount": 0,
                "tippedAmountCount": 0,
            },
            "creator": {"username": self.creator, "image": None},
            "tags": list(self.tags),
        }
        if self.mode:
            out["mode"] = self.mode
        listed = [v for v in self.versions if v.listed]
        out["modelVersions"] = [v.list_json(i, base) for i, v in enumerate(listed)]
        return out


class FakeCivitai(FakeServer):
    """Civitai on 127.0.0.1, with object storage on another port (`civitai.storage`, started with it).

    `tokens`: valid API keys (None: any non-empty key is valid). `require_auth_for_all` mimics a
    deployment where every download needs a key.
    """

    name = "civitai"

    def __init__(
        self,
        storage: FileServer | None = None,
        *,
        tokens: Iterable[str] | None = None,
        require_auth_for_all: bool = False,
    ) -> None:
        super().__init__()
        self._own_storage = storage is None
        self.storage = storage if storage is not None else FileServer()
        self.storage.name = "civitai-storage"
        self.tokens = set(tokens) if tokens is not None else None
        self.require_auth_for_all = require_auth_for_all
        self.models: dict[int, CivitaiModel] = {}
        self.versions: dict[int, CivitaiVersion] = {}
        self._next = {"model": 100_000, "version": 200_000, "file": 300_000}

    def start(self) -> FakeCivitai:
        if self._own_storage:
            self.storage.start()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        if self._own_storage:
            self.storage.stop()

    # -- content ---------------------------------------------------------------------------
    def _id(self, kind: str, wanted: int | None) -> int:
        if wanted is not None:
            return wanted
        self._next[kind] += 1
        return self._next[kind]

    def add_model(
        self, name: str, *, type: str = "Checkpoint", id: int | None = None, **kwargs: Any
    ) -> CivitaiModel:
        model = CivitaiModel(self._id("model", id), name, type, **kwargs)
        self.models[model.id] = model
        return model

    def add_version(
        self, model: CivitaiModel, name: str = "v1.0", *, id: int | None = None, **kwargs: Any
    ) -> CivitaiVersion:
        version = CivitaiVersion(self._id("version", id), model, name, **kwargs)
        model.versions.insert(0, version)  # newest first, as Civitai lists them
        self.versions[version.id] = version
        return version

    def add_file(
        self,
        version: CivitaiVersion,
        data: bytes,
        uploaded_name: str,
        *,
        name: str | None = None,
        type: str = "Model",
        primary: bool | None = None,
        format: str | None = None,
        size: str | None = None,
        fp: str | None = None,
        sha256: bool = True,
        pickle_scan: str = "Success",
        id: int | None = None,
    ) -> CivitaiFile:
        """Add a file; `name` defaults to Civitai's download filename for the model type."""
        model = version.model
        if name is None:
            name = (
                uploaded_name
                if type != "Model"
                else download_filename(
                    model.name, model.type, version.name, uploaded_name, version.trained_words
                )
            )
        if format is None:
            ext = name.rsplit(".", 1)[-1].lower()
            format = {
                "safetensors": "SafeTensor",
                "ckpt": "PickleTensor",
                "pt": "PickleTensor",
                "bin": "PickleTensor",
                "gguf": "GGUF",
                "zip": "Other",
            }.get(ext, "Other")
        file_id = self._id("file", id)
        stem, _, ext = name.rpartition(".")
        key = f"{camel_words(stem)}.{hashlib.sha1(data).hexdigest()[:4]}.{ext}"
        cfile = CivitaiFile(
            id=file_id,
            data=data,
            name=name,
            type=type,
            primary=primary if primary is not None else version.primary_file is None,
            format=format,
            size=size,
            fp=fp,
            hashes=file_hashes(data, sha256=sha256),
            pickle_scan=pickle_scan,
            storage_key=f"/model/{file_id}/{key}",
        )
        version.files.append(cfile)
        self.storage.add(cfile.storage_key, data, filename=name)
        return cfile

    def download_url(self, version_id: int, **params: str) -> str:
        url = f"{self.url}/api/download/models/{version_id}"
        return url + ("?" + urlencode(params) if params else "")

    def overload_search(self, times: int = 1) -> None:
        """`/api/v1/models` answers 503 + Retry-After: 2 the next `times` times."""
        self.fail(
            "/api/v1/models",
            503,
            times=times,
            headers={"Retry-After": "2", "Cache-Control": "no-store"},
            body={"error": OVERLOADED},
        )

    # -- routing ---------------------------------------------------------------------------
    def handle(self, ex: Exchange) -> None:
        segs = ex.path.strip("/").split("/")
        if segs[:2] == ["api", "v1"] and ex.method in ("GET", "HEAD"):
            rest = segs[2:]
            if rest == ["models"]:
                self._search(ex)
            elif len(rest) == 2 and rest[0] == "models":
                self._model(ex, rest[1])
            elif len(rest) == 3 and rest[:2] == ["model-versions", "by-hash"]:
                self._by_hash(ex, rest[2])
            elif len(rest) == 2 and rest[0] == "model-versions":
                self._version(ex, rest[1])
            elif rest == ["me"]:
                ex.json(401, {"error": "Unauthorized"}, NO_STORE)
            else:
                ex.json(404, {"error": "Not found"}, NO_STORE)
        elif segs[:3] == ["api", "download", "models"] and len(segs) == 4:
            self._download(ex, segs[3])
        elif segs == ["login"]:
            ex.reply(200, LOGIN_PAGE, content_type="text/html; charset=utf-8")
        else:
            ex.json(404, {"error": "Not found"}, NO_STORE)

    # -- /api/v1 ---------------------------------------------------------------------------
    def _search(self, ex: Exchange) -> None:
        query = (ex.param("query") or "").strip()
        try:
            limit = int(ex.param("limit") or 100)
            raw_page = ex.param("page")
            page = int(raw_page) if raw_page else None
            offset = int(ex.param("cursor") or 0)
        except ValueError:
            ex.json(
                400, {"error": {"issues": [{"message": "Expected number"}], "name": "ZodError"}}, NO_STORE
            )
            return
        if not 0 <= limit <= 100:
            ex.json(
                400,
                {
                    "error": {
                        "issues": [{"message": "Number must be <= 100", "path": ["limit"]}],
                        "name": "ZodError",
                    }
                },
                NO_STORE,
            )
            return
        if page is not None and query:
            ex.json(
                400,
                {"error": "Cannot use page param with query search. Use cursor-based pagination."},
                NO_STORE,
            )
            return
        if page is not None and page * limit > 1000:
            ex.json(429, {"error": "You've requested too many pages, please use cursors instead"}, NO_STORE)
            return
        found = [m for m in self.models.values() if self._matches(ex, query, m)]
        sort = SORTS.get(ex.param("sort") or "")
        if sort:
            found.sort(key=sort)
        if page is not None:
            offset = (page - 1) * limit
        chunk = found[offset : offset + limit] if limit else []
        meta: dict[str, Any] = {}
        more = offset + limit < len(found) and limit > 0
        base = ex.base_url
        if page is not None:
            meta.update(
                totalItems=len(found),
                currentPage=page,
                pageSize=limit,
                totalPages=-(-len(found) // limit) if limit else 0,
            )
            if more:
                meta["nextPage"] = self._next_url(ex, {"page": str(page + 1)})
        elif more:
            meta["nextCursor"] = str(offset + limit)
            meta["nextPage"] = self._next_url(ex, {"cursor": str(offset + limit)})
        ex.json(200, {"items": [m.json(base) for m in chunk], "metadata": meta}, PUBLIC_CACHE)

    @staticmethod
    def _matches(ex: Exchange, query: str, model: CivitaiModel) -> bool:
        """Whether a model passes the search filters (listed, types, base models, user, nsfw, words)."""
        types = {t for raw in ex.params("types") for t in raw.split(",") if t}
        bases = {b for raw in ex.params("baseModels") for b in raw.split(",") if b}
        username = (ex.param("username") or "").lower()
        if not any(v.listed for v in model.versions):
            return False
        if (types and model.type not in types) or (username and model.creator.lower() != username):
            return False
        if bases and not any(v.base_model in bases for v in model.versions):
            return False
        if model.nsfw and not truthy(ex.param("nsfw")):
            return False
        if query:
            text = model.search_text()
            words = query.lower().split()
            return all(w in text for w in words) or query.upper() in model.hash_values()
        return True

    @staticmethod
    def _next_url(ex: Exchange, override: dict[str, str]) -> str:
        params = [(k, v) for k, vs in ex.query.items() for v in vs if k not in override]
        params += list(override.items())
        return f"{ex.base_url}/api/v1/models?{urlencode(params)}"

    def _model(self, ex: Exchange, raw_id: str) -> None:
        model = self.models.get(int(raw_id)) if raw_id.isdigit() else None
        if model is None:
            ex.json(404, {"error": f"No model with id {raw_id}"}, NO_STORE)
            return
        ex.json(200, model.json(ex.base_url), PUBLIC_CACHE)

    def _version(self, ex: Exchange, raw_id: str) -> None:
        version = self.versions.get(int(raw_id)) if raw_id.isdigit() else None
        if version is None or version.status != "Published":
            ex.json(404, {"error": "Model not found"}, NO_STORE)
            return
        if version.primary_file is None:
            ex.json(404, {"error": "Missing model file"}, NO_STORE)
            return
        ex.json(200, version.json(ex.base_url), PUBLIC_CACHE)

    def _by_hash(self, ex: Exchange, raw_hash: str) -> None:
        wanted = raw_hash.strip().upper()
        hits = [
            v
            for v in self.versions.values()
            if v.status == "Published" and any(wanted in f.hashes.values() for f in v.files)
        ]
        if not hits:
            ex.json(404, {"error": "Model not found"}, NO_STORE)
            return
        oldest = min(hits, key=lambda v: (v.published_at, v.id))  # several matches: the oldest wins
        ex.json(
            200,
            oldest.json(ex.base_url),
            [("Cache-Control", "public, s-maxage=3600"), ("Access-Control-Allow-Origin", "*")],
        )

    # -- /api/download ---------------------------------------------------------------------
    def _token_ok(self, ex: Exchange) -> bool:
        auth = (ex.header("authorization") or "").split()
        token = auth[1] if len(auth) >= 2 else ex.param("token")
        if not token:
            return False
        return self.tokens is None or token in self.tokens

    def _download(self, ex: Exchange, raw_id: str) -> None:
        browser = bool(BROWSER_UA.search(ex.header("user-agent") or ""))

        def fail(status: int, body: dict[str, Any]) -> None:
            if browser:  # browsers get the message as text
                ex.reply(status, str(body.get("message") or body.get("error")), NO_STORE)
            else:
                ex.json(status, body, NO_STORE)

        if ex.method not in ("GET", "HEAD"):
            ex.reply(405, "method not allowed")
            return
        version = self.versions.get(int(raw_id)) if raw_id.isdigit() else None
        if version is None or version.status != "Published":
            fail(404, {"error": "File not found"})
            return
        if version.download_error is not None:
            fail(*version.download_error)
            return
        if (version.require_auth or self.require_auth_for_all) and not self._token_ok(ex):
            if browser:
                location = f"/login?returnUrl=%2Fmodel-versions%2F{version.id}&reason=download-auth"
                ex.reply(
                    307, f"Temporary Redirect. Redirecting to {location}", [("Location", location), *NO_STORE]
                )
            else:
                fail(401, {"error": "Unauthorized", "message": LOGIN_REQUIRED})
            return
        if version.model.mode in ("Archived", "TakenDown"):
            fail(410, {"error": "Model archived, not available for download"})
            return
        cfile = self._select(ex, version)
        if cfile is None:
            fail(404, {"error": "File not found"})
            return
        version.download_count += 1
        disposition = f'attachment; filename="{cfile.name}"'
        query = urlencode(
            {
                "X-Amz-Expires": "86400",
                "response-content-disposition": disposition,
                "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                "X-Amz-Date": "20251121T101500Z",
                "X-Amz-SignedHeaders": "host",
                "X-Amz-Signature": hashlib.sha256(cfile.storage_key.encode()).hexdigest(),
            },
            quote_via=quote,
        )
        location = f"{self.storage.url}{quote(cfile.storage_key)}?{query}"
        ex.reply(307, f"Temporary Redirect. Redirecting to {location}", [("Location", location), *NO_STORE])

    @staticmethod
    def _select(ex: Exchange, version: CivitaiVersion) -> CivitaiFile | None:
        if file_id := ex.param("fileId"):
            return next((f for f in version.files if str(f.id) == file_id), None)
        wanted = {k: ex.param(k) for k in ("type", "format", "size", "fp") if ex.param(k)}
        if not wanted:
            return version.primary_file
        matches = [
            f
            for f in version.files
            if all(str(getattr(f, k) or "").lower() == v.lower() for k, v in wanted.items() if v)
        ]
        matches.sort(key=lambda f: not f.primary)
        return matches[0] if matches else None
