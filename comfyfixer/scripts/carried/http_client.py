"""A small HTTP/1.1 client for ranged GETs, with the script's rules on every request and redirect hop.

Part of the segmented downloader a script carries (`segments.py`). Standard library only.
"""

from __future__ import annotations

import contextlib
import sys
import threading

from .outcome import AUTH, COMPRESSED, FALLBACK, HOST, INTERRUPTED, NETWORK, NOT_MODEL, SIZE, Retry, Stop
from .rules import Rules, origin, split_url

# Annotations only (postponed): importing typing would cost every download's start ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_HEADER = 64 << 10
MAX_HOPS = 10
TIMEOUT = 30.0  # seconds without a byte before a connection counts as failed
TLS_RECORD = 16384 + 2048 + 5  # the largest TLS record on the wire (TLS 1.2: payload, expansion, header)
BAD_TYPES = ("text/html", "application/json", "application/problem+json", "application/xhtml")


def marks_fit() -> bool:
    """Whether a read mark always fits the receive buffer: Linux from 4.19 grows the buffer to hold
    the mark (and caps it at half of the largest buffer). Older kernels do not, so a mark above the
    buffer would never be met; elsewhere it was not checked. Without that, reads wake for any byte."""
    if not sys.platform.startswith("linux"):
        return False
    import os

    try:
        major, minor = (int(part) for part in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (4, 19)


class Connection:
    """One keep-alive HTTP/1.1 connection, spoken directly on the socket.

    http.client would cost 50 ms of imports (email.parser, datetime) in a program whose start-up is
    part of every download, and a header parse per piece; this needs GET, a status line, headers
    and a Content-Length body only (anything else is not a ranged model download: the single
    stream takes over).
    """

    def __init__(self, scheme: str, host: str, port: int, context: Any) -> None:
        import socket

        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            sock = context.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        default = 443 if scheme == "https" else 80
        self.host_header = host if port == default else f"{host}:{port}"
        if ":" in host and port == default:
            self.host_header = f"[{host}]"
        elif ":" in host:
            self.host_header = f"[{host}]:{port}"
        self.extra = bytearray()  # body bytes that arrived with the headers
        # Bytes the kernel waits for before it wakes a read (SO_RCVLOWAT); see `wake_at`.
        self.low_water = 1
        # Over TLS, OpenSSL may already hold the start of a record it could not finish: what the
        # kernel still gets for a body can fall short of what the body owes by up to one record.
        self.slack = TLS_RECORD if scheme == "https" else 0
        self.batching = hasattr(socket, "SO_RCVLOWAT") and marks_fit()

    def request(self, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        self.wake_at(1)  # headers: any byte
        lines = [f"GET {target} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = self.extra
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_HEADER:
                raise OSError("the server's headers are too long")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("the server closed the connection")
            data += chunk
        head, _, rest = bytes(data).partition(b"\r\n\r\n")
        self.extra = bytearray(rest)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise OSError(f"not an HTTP/1.x answer: {status_line[:60]!r}")
        fields: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        return int(parts[1]), fields

    def wake_at(self, count: int, owed: int | None = None) -> None:
        """Let the kernel wake this connection's reads only once `count` bytes are waiting.

        A body is read in 1 MiB blocks: woken for every few hundred KiB that arrive, 16 receiving
        threads cost a thread switch, a GIL hand-off and a pass of Python per wake-up (a tenth of
        the segmented download's CPU on 256 MiB); woken once per block, they do not. The mark never
        exceeds what the body still sends (`owed`, less a TLS record), so it is always met unless
        the link stalls (then the read times out as before).
        """
        if owed is not None:
            count = min(count, owed - self.slack)
        count = max(1, count) if self.batching else 1
        if count != self.low_water:
            import socket

            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, count)
            except OSError:
                self.batching = False
                return
            self.low_water = count

    def readinto(self, view: memoryview) -> int:
        if self.extra:
            n = min(len(view), len(self.extra))
            view[:n] = self.extra[:n]
            del self.extra[:n]
            return n
        try:
            return int(self.sock.recv_into(view))
        except OSError as exc:
            import socket

            if self.low_water == 1 or not isinstance(exc, socket.timeout):  # TimeoutError from 3.10 on
                raise
        # Fewer bytes than the mark in TIMEOUT: a slow link, not a dead one. From now on any byte
        # wakes a read, and TIMEOUT without one fails the connection as before.
        self.batching = False
        self.wake_at(1)
        return int(self.sock.recv_into(view))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Response:
    """An answer's status and headers, and its body still to be read from the connection."""

    def __init__(self, conn: Connection, status: int, headers: dict[str, str], url: str) -> None:
        self.conn = conn
        self.status = status
        self.headers = headers
        self.url = url
        length = headers.get("content-length", "")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.remaining: int | None = int(length) if length.isdigit() and not chunked else None
        self.reusable = self.remaining is not None and "close" not in headers.get("connection", "").lower()

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def readinto(self, view: memoryview) -> int:
        """Body bytes into `view` (never past the body's end); 0 when the connection closed early."""
        if self.remaining is not None:
            view = view[: self.remaining]
            self.conn.wake_at(len(view), self.remaining)
        n = self.conn.readinto(view) if len(view) else 0
        if self.remaining is not None:
            self.remaining -= n
        return n


class Fetcher:
    """Requests with the script's rules: one keep-alive connection per (thread, origin)."""

    def __init__(self, url: str, token: str, user_agent: str, rules: Rules) -> None:
        self.url = url
        self.token = token
        self.user_agent = user_agent
        self.rules = rules
        self.lock = threading.Lock()  # short sections only: never held across a request
        self.resolve_lock = threading.Lock()
        self.resolved = ""  # the final hop of the last resolve
        self.generation = 0
        self.resolves = 0
        self.validator = ""
        self.local = threading.local()
        self.open_conns: set[Connection] = set()
        self.stopping = False
        self._ssl: Any = None

    def connection(self, url: str) -> Connection:
        key = origin(url)
        conns: dict[tuple[str, str, int], Connection] = self.local.__dict__.setdefault("conns", {})
        conn = conns.get(key)
        if conn is None:
            scheme, host, port = key
            if scheme == "https" and self._ssl is None:
                import ssl

                self._ssl = ssl.create_default_context()
            conn = Connection(scheme, host, port, self._ssl)
            conns[key] = conn
            with self.lock:
                self.open_conns.add(conn)
                if self.stopping:
                    raise Stop(INTERRUPTED, "interrupted")
        return conn

    def drop(self, url: str) -> None:
        conns: dict[tuple[str, str, int], Connection] = self.local.__dict__.setdefault("conns", {})
        conn = conns.pop(origin(url), None)
        if conn is not None:
            with self.lock:
                self.open_conns.discard(conn)
            conn.close()

    def close_all(self) -> None:
        """From the signal handler: cut every connection so blocked reads return at once."""
        import socket

        with self.lock:
            self.stopping = True
            conns = list(self.open_conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def request(self, url: str, first: int, last: int) -> Response:
        """One GET of bytes first..last (inclusive) on `url`, without following redirects."""
        headers = {
            "User-Agent": self.user_agent,
            "Accept-Encoding": "identity",
            "Range": f"bytes={first}-{last}",
        }
        if self.token and origin(url) == origin(self.url):
            headers["Authorization"] = "Bearer " + self.token
        for fresh in (False, True):
            try:
                conn = self.connection(url)
                status, fields = conn.request(split_url(url)[3], headers)
                return Response(conn, status, fields, url)
            except Stop:
                raise
            except Exception as exc:  # OSError, ssl errors, a garbled answer
                self.drop(url)
                if self.stopping:
                    raise Stop(INTERRUPTED, "interrupted") from exc
                if type(exc).__name__ == "SSLCertVerificationError":
                    raise Stop(
                        FALLBACK, f"this Python cannot verify the server's certificate: {exc}"
                    ) from exc
                if not fresh and isinstance(exc, OSError):
                    continue  # a kept-alive connection the server closed meanwhile: one more, at once
                raise Retry(f"network error: {exc or type(exc).__name__}") from exc
        raise Retry("network error")

    def done_with(self, r: Response) -> None:
        """After a body was read to its end: keep the connection for the next request, or close it."""
        if not (r.reusable and r.remaining == 0):
            self.drop(r.url)

    def discard(self, r: Response) -> None:
        """Finish an answer we do not use: a short body is read, a long one closes the connection."""
        if r.remaining is not None and r.remaining <= 65536:
            buf = memoryview(bytearray(65536))
            try:
                while r.remaining and r.readinto(buf):
                    pass
            except OSError:
                self.drop(r.url)
                return
        self.done_with(r)

    def resolve(self, first: int, last: int) -> Response:
        """GET the original URL, following redirects one hop at a time, each hop checked."""
        url = self.url
        if not self.rules.allows(url, redirect=False):
            raise Stop(HOST, f"refusing to download from {split_url(url)[1]}: the host is not allowed")
        for _ in range(MAX_HOPS + 1):
            r = self.request(url, first, last)
            if r.status in (301, 302, 303, 307, 308):
                location = r.header("Location")
                self.discard(r)
                if not location:
                    raise Stop(NETWORK, f"HTTP {r.status} without a Location from {split_url(url)[1]}")
                from urllib.parse import urljoin

                target = urljoin(url, location)
                if not self.rules.allows(target, redirect=True):
                    host = split_url(target)[1] or target
                    raise Stop(HOST, f"refusing the redirect to {host}: the host is not allowed")
                url = target
                continue
            return r
        raise Stop(NETWORK, f"more than {MAX_HOPS} redirects")


def check_answer(r: Response, first: int, last: int, size: int | None) -> int:
    """Validate a ranged answer; returns the file's total size. Raises Stop/Retry/Expired otherwise."""
    status = r.status
    if status == 206:
        ctype = r.header("Content-Type").lower()
        if ctype.startswith(BAD_TYPES):
            raise Stop(
                NOT_MODEL, f"the server answered with a web page or an error message ({ctype}), not the model"
            )
        encoding = r.header("Content-Encoding").lower()
        if encoding not in ("", "identity"):
            raise Stop(
                COMPRESSED, f"the server compressed the model ({encoding}) although it was asked not to"
            )
        spec = r.header("Content-Range")
        try:
            unit, rest = spec.split(" ", 1)
            span, total_text = rest.split("/", 1)
            a, b = (int(x) for x in span.split("-", 1))
            total = int(total_text)
        except ValueError:
            raise Stop(NETWORK, f"the server sent an unreadable Content-Range: {spec[:80]!r}") from None
        if unit.lower() != "bytes" or a != first or b != min(last, total - 1) or total <= 0:
            raise Stop(NETWORK, f"the server sent bytes {span[:40]}, not the {first}-{last} asked for")
        if size is not None and total != size:
            raise Stop(SIZE, f"the server's file has {total} bytes, expected {size}")
        length = r.header("Content-Length")
        if length and (not length.isdigit() or int(length) != b - a + 1):
            raise Stop(NETWORK, f"the server's Content-Length {length[:20]} does not match its Content-Range")
        return total
    if status == 200:
        raise Stop(FALLBACK, "the server does not send byte ranges")
    if status in (408, 425, 429, 500, 502, 503, 504):
        after = r.header("Retry-After")
        raise Retry(f"HTTP {status} from the server", float(after) if after.isdigit() else None)
    raise Stop(NETWORK, f"HTTP {status} from the server", status)


def auth_stop(exc: Stop) -> Stop:
    """A 401/403 from the original URL means a login is missing (the script says which token)."""
    if exc.status in (401, 403):
        return Stop(AUTH, f"the server refused access (HTTP {exc.status})", exc.status)
    return exc


def strong_validator(r: Response) -> str:
    etag = r.header("ETag")
    return "" if not etag or etag.startswith("W/") else etag
