"""The file server / CDN fake: registered blobs by path, with Range, and the ways downloads go wrong.

Owns `Blob` (bytes in memory or a file on disk), `serve_blob` (HEAD/GET, `Range: bytes=a-|a-b|-n`
→ 206 + Content-Range, 416, ETag, If-None-Match → 304, throttling, a connection dropped half-way)
and `FileServer`, which adds per-path behaviours (redirect chains, HTML login page, JSON error,
drops) and the ComfyUI-Manager catalogue (`model-list.json` with ETag/Last-Modified → 304).
The hub and Civitai fakes reuse `FileServer` as their CDN / object storage.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.fakes.server import Exchange, FakeServer, HeaderList, Headers, _header_list

CHUNK = 1 << 20  # 1 MiB writes: loopback reaches several hundred MB/s with them
LAST_MODIFIED = "Fri, 09 Aug 2024 13:51:02 GMT"

LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Log in | Fake Hub</title></head>
<body><form action="/login" method="post"><h1>Log in to continue</h1>
<input name="username"><input name="password" type="password"><button>Log in</button></form>
</body></html>
"""


@dataclass
class Blob:
    """One downloadable body. `sha256`/`size` describe the *intended* bytes (what a catalogue advertises)."""

    data: bytes | None = None
    file: Path | None = None
    filename: str = "file.bin"
    content_type: str = "application/octet-stream"
    rate: float | None = None  # bytes per second; None = as fast as possible
    hold_after: int | None = None  # GET bodies stop at this offset until set back to None
    corrupt: bool = False  # serve bytes that differ from `sha256` (same length)
    etag: str | None = None  # defaults to the sha256
    headers: HeaderList = field(default_factory=list)  # extra response headers
    _sha256: str | None = None

    def __post_init__(self) -> None:
        if (self.data is None) == (self.file is None):
            raise ValueError("a Blob needs exactly one of data= or file=")
        if self.corrupt and self.file is not None:
            raise ValueError("corrupt=True is only supported for in-memory blobs")

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else os.path.getsize(self.file)  # type: ignore[arg-type]

    @property
    def sha256(self) -> str:
        """Lower-case hex sha256 of the intended content (computed lazily: disk blobs can be 1 GiB)."""
        if self._sha256 is None:
            h = hashlib.sha256()
            for piece in self._iter_intended(0, self.size, CHUNK):
                h.update(piece)
            self._sha256 = h.hexdigest()
        return self._sha256

    @property
    def strong_etag(self) -> str:
        if self.etag is None and self.file is not None:
            # Hashing a 1 GiB file per request would dominate a benchmark; disk servers use size+mtime.
            st = os.stat(self.file)
            return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        return f'"{self.etag or self.sha256}"'

    def _iter_intended(self, start: int, end: int, chunk: int) -> Iterator[bytes]:
        if self.data is not None:
            view = memoryview(self.data)
            for pos in range(start, end, chunk):
                yield bytes(view[pos : min(end, pos + chunk)])
            return
        assert self.file is not None
        with open(self.file, "rb") as fh:
            fh.seek(start)
            pos = start
            while pos < end:
                piece = fh.read(min(chunk, end - pos))
                if not piece:
                    break
                pos += len(piece)
                yield piece

    def iter_served(self, start: int, end: int, chunk: int = CHUNK) -> Iterator[bytes]:
        """The bytes actually sent for [start, end): the intended ones, or a corrupted copy."""
        if not self.corrupt:
            yield from self._iter_intended(start, end, chunk)
            return
        assert self.data is not None
        bad = bytearray(self.data)
        if bad:
            bad[len(bad) // 2] ^= 0xFF
        view = memoryview(bytes(bad))
        for pos in range(start, end, chunk):
            yield bytes(view[pos : min(end, pos + chunk)])


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """`(start, end_inclusive)`, None (no usable Range: send 200), or "unsatisfiable" (send 416)."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return None  # malformed or multi-range: RFC 9110 lets a server ignore it
    first, last = m.group(1), m.group(2)
    if not first:  # suffix range: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return (max(0, size - n), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return (start, min(end, size - 1))


def content_disposition(filename: str, inline: bool = False) -> str:
    kind = "inline" if inline else "attachment"
    return f"{kind}; filename*=UTF-8''{quote(filename)}; filename=\"{filename}\";"


def serve_blob(
    ex: Exchange,
    blob: Blob,
    extra_headers: Headers | None = None,
    *,
    disposition: str | None = None,
    drop_after: int | None = None,
) -> None:
    """Answer HEAD/GET for a blob, honouring Range, If-None-Match, throttling and a scripted drop."""
    size = blob.size
    headers: HeaderList = [
        ("Accept-Ranges", "bytes"),
        ("ETag", blob.strong_etag),
        ("Last-Modified", LAST_MODIFIED),
        ("Content-Type", blob.content_type),
        (
            "Content-Disposition",
            disposition or ex.param("response-content-disposition") or content_disposition(blob.filename),
        ),
        *blob.headers,
        *_header_list(extra_headers),
    ]
    inm = ex.header("if-none-match")
    if inm and blob.strong_etag in [t.strip().removeprefix("W/") for t in inm.split(",")]:
        ex.start(304, [h for h in headers if h[0].lower() != "content-type"])
        return
    rng = parse_range(ex.header("range"), size)
    if rng == "unsatisfiable":
        ex.reply(416, b"", [("Content-Range", f"bytes */{size}"), ("Accept-Ranges", "bytes")])
        return
    if isinstance(rng, tuple):
        start, end = rng
        status = 206
        headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
    else:
        start, end, status = 0, size - 1, 200
    length = end - start + 1
    headers.append(("Content-Length", str(length)))
    ex.start(status, headers)
    if ex.is_head or length <= 0:
        return
    _stream(ex, blob, start, end + 1, drop_after)


def _stream(ex: Exchange, blob: Blob, start: int, end: int, drop_after: int | None) -> None:
    rate = blob.rate
    # Small chunks at low rates keep the pacing smooth; big ones at high rates keep Python out of the way.
    chunk = CHUNK if not rate else int(max(16 << 10, min(CHUNK, rate / 20)))
    sent = 0
    t0 = time.monotonic()
    for piece in blob.iter_served(start, end, chunk):
        hold = blob.hold_after
        if hold is not None and start + sent + len(piece) > hold:
            # Serve up to the hold point, then wait until the test releases it (or the server stops).
            head = piece[: max(0, hold - start - sent)]
            ex.write(head)
            sent += len(head)
            piece = piece[len(head) :]
            while blob.hold_after is not None and start + sent >= blob.hold_after:
                if ex.wait(0.02):
                    ex.drop()
                    return
        if drop_after is not None and sent + len(piece) >= drop_after:
            ex.write(piece[: max(0, drop_after - sent)])
            ex.drop()
            return
        ex.write(piece)
        sent += len(piece)
        if rate:
            ahead = sent / rate - (time.monotonic() - t0)
            if ahead > 0 and ex.wait(ahead):
                ex.drop()  # server stopping
                return


def _stream_endless(ex: Exchange, announce: int, limit: int) -> None:
    headers = [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes")]
    if ex.is_head:
        ex.start(200, [*headers, ("Content-Length", str(announce))])
        return
    ex.start(200, [*headers, ("Connection", "close")])  # no length: the body ends when we say so
    header = b'{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
    piece = struct.pack("<Q", len(header)) + header
    piece += bytes(64 << 10)
    sent = 0
    try:
        while sent < limit and not ex.wait(0):
            ex.write(piece)
            sent += len(piece)
            piece = bytes(64 << 10)
    except OSError:
        pass  # the client hung up: what a size cap does
    ex.drop()


def sparse_file(path: Path, size: int) -> Path:
    """A file of `size` zero bytes that takes no disk space (for 1 GiB throughput benchmarks)."""
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


@dataclass
class _Rule:
    kind: str  # redirect | html | json | drop | endless
    times: int | None
    status: int = 200
    location: str = ""
    body: bytes = b""
    after: int = 0
    used: int = 0

    def live(self) -> bool:
        return self.times is None or self.used < self.times


class FileServer(FakeServer):
    """A plain download server / CDN. Register blobs with `add`, script behaviours per path.

    Paths are matched percent-decoded and without the query string.
    """

    name = "files"

    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[str, Blob] = {}
        self._rules: dict[str, list[_Rule]] = {}
        self._catalogue: tuple[str, bytes, str, str] | None = None  # path, body, etag, last-modified

    # -- registration ----------------------------------------------------------------------
    def add(
        self,
        path: str,
        data: bytes | None = None,
        *,
        file: Path | None = None,
        filename: str | None = None,
        content_type: str = "application/octet-stream",
        rate: float | None = None,
        corrupt: bool = False,
        etag: str | None = None,
        headers: Headers | None = None,
    ) -> Blob:
        """Serve `data` (or the file at `file`, streamed from disk) at `path`; returns the Blob."""
        path = _norm(path)
        blob = Blob(
            data=data,
            file=file,
            filename=filename or path.rsplit("/", 1)[-1] or "file.bin",
            content_type=content_type,
            rate=rate,
            corrupt=corrupt,
            etag=etag,
            headers=_header_list(headers),
        )
        self.blobs[path] = blob
        return blob

    def url_for(self, path: str, *, alt: bool = False) -> str:
        """Absolute URL of a path on this server (`alt=True`: via `localhost`, another origin)."""
        return f"{self.alt_url if alt else self.url}{quote(_norm(path))}"

    def redirect(self, path: str, location: str, *, status: int = 302, times: int | None = None) -> None:
        """Answer `path` with a redirect. `location` may be relative, absolute, or on another server."""
        self._add_rule(path, _Rule("redirect", times, status=status, location=location))

    def html(self, path: str, body: str = LOGIN_PAGE, *, status: int = 200, times: int | None = None) -> None:
        """Answer `path` with an HTML page (default: a login page served as 200 text/html)."""
        self._add_rule(path, _Rule("html", times, status=status, body=body.encode()))

    def json_error(self, path: str, obj: Any, *, status: int = 403, times: int | None = None) -> None:
        """Answer `path` with a JSON body (an API error saved as a model file, if the client is careless)."""
        self._add_rule(path, _Rule("json", times, status=status, body=json.dumps(obj).encode()))

    def endless(self, path: str, announce: int, *, limit: int = 256 << 20) -> None:
        """HEAD announces `announce` bytes; GET streams without a length until the client hangs up.

        The body starts like a safetensors file, so only a size cap can stop it; `limit` bounds the
        fake itself (a test must never depend on it: `bytes_sent` shows how far a client let it go).
        """
        self._add_rule(path, _Rule("endless", None, after=announce, location=str(limit)))

    def drop(self, path: str, after: int, *, times: int | None = 1) -> None:
        """On GET, send full headers and `after` body bytes, then cut the connection."""
        self._add_rule(path, _Rule("drop", times, after=after))

    def set_catalogue(
        self,
        entries: Iterable[Mapping[str, Any]],
        *,
        path: str = "/model-list.json",
        last_modified: str = LAST_MODIFIED,
    ) -> str:
        """Serve a ComfyUI-Manager `model-list.json` (`{"models": [...]}`); returns its URL."""
        body = json.dumps({"models": list(entries)}, indent=1).encode()
        etag = '"' + hashlib.sha1(body).hexdigest() + '"'
        self._catalogue = (_norm(path), body, etag, last_modified)
        return self.url_for(path) if self.running else path

    def _add_rule(self, path: str, rule: _Rule) -> None:
        with self._lock:
            self._rules.setdefault(_norm(path), []).append(rule)

    def _take_rule(self, path: str, method: str) -> _Rule | None:
        with self._lock:
            for rule in self._rules.get(path, []):
                if rule.kind == "drop" and method != "GET":
                    continue
                if rule.live():
                    rule.used += 1
                    return rule
        return None

    # -- serving ---------------------------------------------------------------------------
    def handle(self, ex: Exchange) -> None:
        if ex.method not in ("GET", "HEAD"):
            ex.reply(405, "method not allowed", [("Allow", "GET, HEAD")])
            return
        if self._catalogue and ex.path == self._catalogue[0]:
            self._serve_catalogue(ex)
            return
        rule = self._take_rule(ex.path, ex.method)
        drop_after = None
        if rule is not None:
            if rule.kind == "redirect":
                ex.reply(rule.status, f"Redirecting to {rule.location}", [("Location", rule.location)])
                return
            if rule.kind == "html":
                ex.reply(rule.status, rule.body, content_type="text/html; charset=utf-8")
                return
            if rule.kind == "json":
                ex.reply(rule.status, rule.body, content_type="application/json; charset=utf-8")
                return
            if rule.kind == "endless":
                _stream_endless(ex, rule.after, int(rule.location))
                return
            drop_after = rule.after
        blob = self.blobs.get(ex.path)
        if blob is None:
            ex.reply(404, "Not Found")
            return
        serve_blob(ex, blob, drop_after=drop_after)

    def _serve_catalogue(self, ex: Exchange) -> None:
        assert self._catalogue is not None
        _, body, etag, last_modified = self._catalogue
        # GitHub raw serves it as text/plain: clients must parse the body, not trust the type.
        headers = [("ETag", etag), ("Last-Modified", last_modified), ("Cache-Control", "max-age=300")]
        inm = ex.header("if-none-match")
        if inm is not None:
            if etag in [t.strip().removeprefix("W/") for t in inm.split(",")]:
                ex.reply(304, b"", headers)
                return
        elif (ims := ex.header("if-modified-since")) is not None:
            try:
                if parsedate_to_datetime(ims) >= parsedate_to_datetime(last_modified):
                    ex.reply(304, b"", headers)
                    return
            except (TypeError, ValueError):
                pass
        ex.reply(200, body, headers, content_type="text/plain; charset=utf-8")


def _norm(path: str) -> str:
    return path if path.startswith("/") else "/" + path
