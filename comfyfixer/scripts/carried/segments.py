"""Download one large file over several ranged connections into a single preallocated part file.

Carried verbatim by every download script and run as `python -S -c <this file> ARGS` (standard
library only: a script runs alone, with no comfyfixer installed). The script calls it for files
above a size threshold; it answers with exit code 3 ("use the single stream") when the server does
not serve ranges, when a proxy is configured, or when this Python cannot verify the server's TLS
certificate, and the script's curl stream takes over with an empty part.

How it works (why, not what):
- The file is cut into pieces handed out in file order to N connections (keep-alive, one request
  per piece). Pieces arrive almost in order, so the sha256 of the contiguous prefix is computed
  while the transfer runs (re-read from the page cache) and only the last few pieces are hashed
  after it: equal static segments would leave 15/16 of the file to hash at the end.
- Pieces start at 1 MiB (file size / 16 per connection, at most 16 MiB) and grow with the measured
  request latency x speed of each connection, so a far CDN does not spend its time on round trips.
- Every request and redirect hop is checked: the host rule (allowed hosts; signed storage hosts by
  suffix only as redirect targets; plain http only for configured hosts), `Accept-Encoding:
  identity` with any other encoding refused, no HTML/JSON answer, `Content-Range` exactly the
  bytes asked for of a file of the expected size, never a byte written past the file's end. The
  token goes only to the original URL's origin, never to a redirect target.
- A signed redirect target that stops working (401/403/410 mid-download: the signature expired) is
  re-resolved from the original URL, once per expiry, shared by all connections.
- Resume: `<part>.segments` (JSON) lists the byte ranges on disk, the file's size, validator and
  URL. It is written before the part is extended, then every 0.25 s and on exit (Ctrl-C, SIGTERM,
  errors). Without a published sha256 nothing would catch a part that a crash left with holes, so
  then the part is fdatasync'ed before each record write. A part without a record is a prefix
  (the curl stream's resume rule). Any doubt about the record means starting from zero.

Arguments: PART URL EXPECTED_SIZE SEGMENTS MIN_SIZE USER_AGENT DURABLE ALLOWED_HOSTS HTTP_HOSTS
REDIRECT_SUFFIXES GRANTED_URL HOSTS_PY NAME FORMATS_PY (lists space-separated; EXPECTED_SIZE may be
empty; DURABLE 1 or 0; HOSTS_PY and FORMATS_PY the texts of `checks/hosts.py` and
`checks/formats.py`, NAME the file name the format check judges by).
The token, if any, is the first line of standard input (never an argument: `ps` shows those).
Prints `size N`, `sha256 HEX` and `format NAME CODE` (the format check's answer, with `why REASON`
when it fails) on success;
`http_status N` before an HTTP failure.
Exit codes follow the script's: 0 done, 3 use the single stream, 10 network/HTTP, 11 login needed,
12 not the model (a page), 13 size differs, 15 cannot write, 21 host not allowed, 22 compressed
answer, 130 interrupted (the record is saved).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
import time

# Annotations only (postponed): importing typing would cost every download's start ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

OK, FALLBACK, NETWORK, AUTH, NOT_MODEL, SIZE, WRITE, HOST, COMPRESSED = 0, 3, 10, 11, 12, 13, 15, 21, 22
INTERRUPTED = 130
MIB = 1 << 20
READ_BLOCK = MIB
MAX_PIECE = 64 * MIB
MIN_STEAL = 512 << 10
MAX_HEADER = 64 << 10
MAX_HOPS = 10
MAX_RESOLVES = 20  # signed URLs re-resolved in one run (each expiry costs one)
TIMEOUT = 30.0  # seconds without a byte before a connection counts as failed
RECORD_EVERY = 0.25
BAD_TYPES = ("text/html", "application/json", "application/problem+json", "application/xhtml")


class Stop(Exception):
    """Ends the download with an exit code and a sentence for the user."""

    def __init__(self, code: int, message: str, status: int | None = None, *, restart: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.restart = restart  # what is on disk cannot be resumed


class Retry(Exception):
    """A failure worth another attempt (network error, 429/5xx), after `delay` seconds if given."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


def say(message: str) -> None:
    sys.stderr.write(f"comfyfixer: {message}\n")
    sys.stderr.flush()


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


# ---- URLs and the host rule ----------------------------------------------------------------------


class Rules:
    """Where requests may go: the host lists the script carries (space-separated), one rule for all.

    The decision is `host_allowed` of `checks/hosts.py`, the module the run's validator imports and
    the script's curl hops run; its text comes as an argument and is executed here, so there is one
    implementation of the rule.
    """

    def __init__(self, allowed: str, http_hosts: str, suffixes: str, granted: str, hosts_py: str) -> None:
        self.allowed = frozenset(allowed.lower().split())
        self.http_hosts = frozenset(http_hosts.lower().split())
        self.suffixes = tuple(suffixes.lower().split())
        self.granted = tuple(granted.split())
        self.rule = load_module("comfyfixer_hosts", hosts_py).host_allowed

    def allows(self, url: str, *, redirect: bool) -> bool:
        if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
            return False  # a malformed target is never requested (it could split the request line)
        return bool(
            self.rule(
                url,
                allowed=self.allowed,
                http_hosts=self.http_hosts,
                suffixes=self.suffixes,
                redirect=redirect,
                granted=self.granted,
            )
        )


def load_module(name: str, text: str) -> Any:
    """A carried module of `comfyfixer.checks`, executed from its text as a module of its own.

    Registered under its own name (dataclasses look their module up) and not as __main__, so its
    command-line part stays idle.
    """
    import types

    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(text, f"{name}.py", "exec"), module.__dict__)
    return module


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, lower-case host, port, path?query) of an absolute http(s) URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return scheme, "", 0, ""
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    return scheme, (parts.hostname or "").lower(), port, target


def origin(url: str) -> tuple[str, str, int]:
    scheme, host, port, _ = split_url(url)
    return scheme, host, port


def proxied(url: str) -> bool:
    """Whether the environment routes this URL through a proxy (curl honours proxies; we do not)."""
    scheme, host, _, _ = split_url(url)
    names = (scheme + "_proxy", "all_proxy")
    if not any(os.environ.get(n) or os.environ.get(n.upper()) for n in names):
        return False
    no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""
    for entry in no_proxy.split(","):
        entry = entry.strip().lower().lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return False
    return True


# ---- the piece plan and the resume record ----------------------------------------------------------


class Piece:
    """A byte range [start, end) being fetched; `done` bytes from `start` are on disk."""

    __slots__ = ("done", "end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.done = 0


def merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


class Plan:
    """What is on disk, what is being fetched and what is left; shared by the connections (one lock)."""

    def __init__(self, size: int, done: list[tuple[int, int]], connections: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.done = merge(done)
        self.active: list[Piece] = []
        gaps, pos = [], 0
        for a, b in self.done:
            if a > pos:
                gaps.append((pos, a))
            pos = b
        if pos < size:
            gaps.append((pos, size))
        self.gaps = gaps
        base = size // (connections * 8) if connections else size
        self.base_piece = max(MIB, min(16 * MIB, base // MIB * MIB))
        # Pieces grow with a far server's round trip, but stay small enough that the pieces in flight
        # at the end (hashed after the last byte) are a small share of the file.
        self.max_piece = max(self.base_piece, min(MAX_PIECE, size // (max(connections, 1) * 4)))
        self.progress = threading.Event()  # set after every write: wakes the hasher

    def missing(self) -> int:
        return sum(b - a for a, b in self.gaps)

    def take(self, wanted: int) -> Piece | None:
        """The next piece in file order; when none is left, half of the largest piece still running."""
        with self.lock:
            if not self.gaps:
                return self.steal()
            a, b = self.gaps[0]
            end = min(b, a + max(self.base_piece, min(wanted, self.max_piece)))
            if b - end < self.base_piece // 4:  # no sliver left behind for a connection of its own
                end = b
            if end == b:
                self.gaps.pop(0)
            else:
                self.gaps[0] = (end, b)
            piece = Piece(a, end)
            self.active.append(piece)
            return piece

    def steal(self) -> Piece | None:
        # Without this the last pieces end one by one and the link idles; splitting the slowest keeps
        # every connection busy to the end. The owner may be reading one block past its done mark.
        best, left = None, 0
        for p in self.active:
            rest = p.end - (p.start + p.done + READ_BLOCK)
            if rest > left:
                best, left = p, rest
        if best is None or left < 2 * MIN_STEAL:
            return None
        mid = best.end - left // 2
        piece = Piece(mid, best.end)
        best.end = mid
        self.active.append(piece)
        return piece

    def finish(self, piece: Piece) -> None:
        with self.lock:
            self.active.remove(piece)
            self.done = merge([*self.done, (piece.start, piece.start + piece.done)])
            if piece.done < piece.end - piece.start:  # given up: hand the rest back
                self.gaps = merge([*self.gaps, (piece.start + piece.done, piece.end)])
        self.progress.set()

    def snapshot(self) -> list[tuple[int, int]]:
        with self.lock:
            return merge(self.done + [(p.start, p.start + p.done) for p in self.active])

    def prefix(self) -> int:
        """Bytes from 0 that are all on disk."""
        ranges = self.snapshot()
        return ranges[0][1] if ranges and ranges[0][0] == 0 else 0

    def bytes_on_disk(self) -> int:
        return sum(b - a for a, b in self.snapshot())


class Record:
    """`<part>.segments`: the resume record, replaced atomically (temp file + rename)."""

    def __init__(self, part: str, url: str) -> None:
        self.path = part + ".segments"
        self.url = url

    def load(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, size: int, validator: str, done: list[tuple[int, int]]) -> None:
        tmp = f"{self.path}.tmp.{os.getpid()}"
        body = {
            "version": 1,
            "url": self.url,
            "size": size,
            "validator": validator,
            "done": [[a, b] for a, b in done],
            "bytes": sum(b - a for a, b in done),
        }
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(body, fh, separators=(",", ":"))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        for path in (self.path, f"{self.path}.tmp.{os.getpid()}"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def usable_ranges(
    data: dict[str, Any] | None, url: str, size: int | None
) -> tuple[list[tuple[int, int]], str] | None:
    """The done ranges and validator of a record that matches this download, else None."""
    if not data or data.get("version") != 1 or data.get("url") != url:
        return None
    total = data.get("size")
    if not isinstance(total, int) or total <= 0 or (size is not None and total != size):
        return None
    ranges: list[tuple[int, int]] = []
    for item in data.get("done") or []:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, int) for x in item)):
            return None
        a, b = item
        if not 0 <= a <= b <= total:
            return None
        ranges.append((a, b))
    validator = data.get("validator")
    return merge(ranges), validator if isinstance(validator, str) else ""


# ---- HTTP -------------------------------------------------------------------------------------------


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

    def request(self, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
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

    def readinto(self, view: memoryview) -> int:
        if self.extra:
            n = min(len(view), len(self.extra))
            view[:n] = self.extra[:n]
            del self.extra[:n]
            return n
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


# ---- the download ---------------------------------------------------------------------------------


class Download:
    def __init__(self, args: list[str], token: str) -> None:
        (self.part, url, expected, segments, min_size, user_agent, durable) = args[:7]
        rules = Rules(*args[7:12])
        self.name, self.formats_py = args[12:14]
        self.expected = int(expected) if expected.isdigit() else None
        self.connections = max(1, min(32, int(segments) if segments.isdigit() else 16))
        self.min_size = int(min_size) if min_size.isdigit() else 32 * MIB
        self.durable = durable == "1"
        self.fetcher = Fetcher(url, token, user_agent, rules)
        self.record = Record(self.part, url)
        self.max_attempts = max(1, env_int("COMFYFIXER_MAX_ATTEMPTS", 5))
        self.retry_delay = env_int("COMFYFIXER_RETRY_DELAY", 2)
        self.retry_max = env_int("COMFYFIXER_RETRY_MAX_DELAY", 300)
        self.stop = threading.Event()
        self.idle = threading.Event()  # set when the last connection has ended
        self.running = 0
        self.failure: Stop | None = None
        self.fd = -1
        self.plan: Plan | None = None
        self.owns_part = False  # a record exists (found or written): the part is laid out by pieces
        self.sha256 = ""
        self.hash_error: BaseException | None = None
        self.tty = sys.stderr.isatty()

    # -- outcome of a thread -----------------------------------------------------------------------
    def fail(self, stop: Stop) -> None:
        with self.fetcher.lock:
            if self.failure is None:
                self.failure = stop
        self.stop.set()

    def interrupt(self, signum: int, frame: Any) -> None:
        self.fail(Stop(INTERRUPTED, "interrupted"))
        self.fetcher.close_all()

    def stream_prefix(self) -> int:
        """How much of the part the single stream may keep (a clean prefix) if it takes over."""
        if self.plan is not None:
            return self.plan.prefix()
        return 0 if self.owns_part else -1  # -1: leave the part as it is

    # -- start: probe, record, preallocation ------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self.interrupt)
        url = self.fetcher.url
        saved = self.record.load()
        self.owns_part = saved is not None
        if proxied(url):
            raise Stop(FALLBACK, "a proxy is configured; curl honours it")
        reuse = usable_ranges(saved, url, self.expected)
        done: list[tuple[int, int]] = []
        validator = ""
        if reuse is not None:
            done, validator = reuse
        elif saved is None:
            try:
                prefix = os.path.getsize(self.part)  # the curl stream's part: a clean prefix
            except OSError:
                prefix = 0
            if prefix and (self.expected is None or prefix <= self.expected):
                done = [(0, prefix)]
        else:
            say("the resume record does not match this download; starting from zero")
        head: Piece | None = None
        if self.expected is not None:
            plan = self.plan = Plan(self.expected, done, self.connections)
            if not plan.gaps:
                return self.finish_from_disk()
            head = plan.take(plan.base_piece)
            assert head is not None
            answer, total = self.probe(head.start, head.end - 1)
        else:
            answer, total = self.probe(0, 0)
            self.fetcher.discard(answer)  # the one byte: keeps the connection for the next request
            if total < self.min_size:
                raise Stop(FALLBACK, "small file")
            plan = Plan(total, [r for r in done if r[1] <= total], self.connections)
        new_validator = strong_validator(answer)
        if done and validator and new_validator and validator != new_validator:
            say("the file changed on the server since the last run; starting from zero")
            if head is not None:
                self.fetcher.discard(answer)
            plan = Plan(total, [], self.connections)
            head = None
        self.fetcher.validator = new_validator
        self.plan = plan
        self.open_part(total)
        return self.transfer(answer if head is not None else None, head)

    def probe(self, first: int, last: int) -> tuple[Response, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self.fetcher.resolve(first, last)
                try:
                    total = check_answer(answer, first, last, self.expected)
                except (Stop, Retry):
                    self.fetcher.discard(answer)
                    raise
            except Retry as exc:
                if attempt >= self.max_attempts:
                    raise Stop(NETWORK, f"{exc} after {attempt} attempts") from None
                self.backoff(attempt, exc)
                continue
            except Stop as exc:
                raise auth_stop(exc) from None
            self.fetcher.resolved = answer.url
            return answer, total

    def backoff(self, attempt: int, exc: Retry) -> None:
        """Sleep before the next attempt; raises Stop when interrupted meanwhile."""
        if self.stop.is_set():
            raise self.failure or Stop(INTERRUPTED, "interrupted")
        delay = float(self.retry_delay * (1 << min(attempt - 1, 10)))
        if exc.delay is not None and exc.delay > delay:
            delay = exc.delay
        delay = min(delay, float(self.retry_max))
        say(f"{exc}; retrying in {delay:g}s (attempt {attempt + 1} of {self.max_attempts})")
        if self.stop.wait(delay):
            raise self.failure or Stop(INTERRUPTED, "interrupted")

    def open_part(self, total: int) -> None:
        assert self.plan is not None
        try:
            # The record comes first: a part extended before it exists would look like a full prefix.
            self.record.save(total, self.fetcher.validator, self.plan.snapshot())
            self.owns_part = True
            self.fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
            have = os.fstat(self.fd).st_size
            if have < total:
                st = os.statvfs(self.part)
                room = st.f_bavail * st.f_frsize
                if room < total - have:
                    raise Stop(
                        WRITE,
                        f"not enough free space for {self.part}: {total - have} more bytes needed,"
                        f" {room} free",
                    )
            if have != total:
                os.ftruncate(self.fd, total)
        except OSError as exc:
            raise Stop(WRITE, f"cannot write {self.part}: {exc.strerror or exc}") from None

    def finish_from_disk(self) -> int:
        """Every byte arrived before an interruption: only the hash is missing."""
        try:
            self.fd = os.open(self.part, os.O_RDONLY)
        except OSError as exc:
            raise Stop(WRITE, f"cannot read {self.part}: {exc.strerror or exc}") from None
        self.hash_prefix()
        return self.report()

    # -- the transfer -------------------------------------------------------------------------------
    def transfer(self, first_answer: Response | None, head: Piece | None) -> int:
        plan = self.plan
        assert plan is not None
        pending = plan.missing() + (head.end - head.start if head else 0)
        count = min(self.connections, max(1, -(-pending // plan.base_piece)))
        # The probe's answer is the first piece: its bytes are already on their way.
        jobs: list[tuple[Response | None, Piece | None]] = [(first_answer, head)] + [(None, None)] * (
            count - 1
        )
        self.running = count
        workers = [threading.Thread(target=self.worker, args=job, daemon=True) for job in jobs]
        hasher = threading.Thread(target=self.hash_thread, daemon=True)
        for t in workers:
            t.start()
        hasher.start()
        shown = time.monotonic()
        while not self.idle.wait(RECORD_EVERY):
            if self.stop.is_set():
                # Blocked connects and reads were cut; do not wait on a straggler for long.
                for t in workers:
                    t.join(max(0.0, 2.0 / len(workers)))
                break
            self.checkpoint()
            if self.tty and time.monotonic() - shown >= 1.0:
                shown = time.monotonic()
                self.show_progress()
        if self.tty:
            sys.stderr.write("\n")
        if self.failure is None and plan.missing() == 0 and not plan.active:
            hasher.join()
            if self.hash_error is not None:
                raise Stop(WRITE, f"cannot read {self.part} back to hash it: {self.hash_error}")
            return self.report()
        self.stop.set()
        self.checkpoint()
        if self.failure is None:
            raise Stop(NETWORK, "the download stopped early; run this script again to resume")
        raise self.failure

    def checkpoint(self) -> None:
        assert self.plan is not None
        done = self.plan.snapshot()  # taken before the sync: it claims only bytes written by then
        try:
            if self.durable and self.fd >= 0:
                os.fdatasync(self.fd)
            self.record.save(self.plan.size, self.fetcher.validator, done)
        except OSError as exc:
            self.fail(
                Stop(WRITE, f"cannot write the resume record {self.record.path}: {exc.strerror or exc}")
            )

    def show_progress(self) -> None:
        assert self.plan is not None
        have = self.plan.bytes_on_disk()
        sys.stderr.write(
            f"\rcomfyfixer: {have >> 20} of {self.plan.size >> 20} MiB,"
            f" {len(self.plan.active)} connections   "
        )
        sys.stderr.flush()

    def worker(self, answer: Response | None, piece: Piece | None) -> None:
        plan = self.plan
        assert plan is not None
        buf = bytearray(READ_BLOCK)
        wanted = plan.base_piece
        try:
            while not self.stop.is_set():
                if piece is None:
                    piece = plan.take(wanted)
                    if piece is None:
                        return
                wanted = self.fetch_piece(piece, answer, buf, wanted)
                plan.finish(piece)
                piece = None
                answer = None
        except Stop as exc:
            self.fail(exc)
        except BaseException as exc:  # a thread's failure becomes the download's outcome
            self.fail(Stop(NETWORK, f"unexpected error: {exc!r}"))
        finally:
            if piece is not None:
                plan.finish(piece)
            with self.fetcher.lock:
                self.running -= 1
                if self.running == 0:
                    self.idle.set()

    def fetch_piece(self, piece: Piece, answer: Response | None, buf: bytearray, wanted: int) -> int:
        """Fetch the rest of `piece` (retries, expired signed URLs); returns the next piece size to ask."""
        failures = 0
        while piece.done < piece.end - piece.start:
            if self.stop.is_set():
                return wanted
            first, last = piece.start + piece.done, piece.end - 1
            before = piece.done
            try:
                t0 = time.monotonic()
                if answer is None:
                    answer = self.request_piece(first, last)
                t1 = time.monotonic()
                self.read_body(answer, piece, buf)
                t2 = time.monotonic()
                if t2 > t1 and answer is not None:
                    # Grow pieces so a request's round trip stays a small share of each piece's time.
                    speed = (piece.done - before) / (t2 - t1)
                    wanted = int(min(2 * wanted, max(MIB, 16 * speed * (t1 - t0))))
            except Retry as exc:
                answer = None
                failures = 1 if piece.done > before else failures + 1
                if failures >= self.max_attempts:
                    raise Stop(
                        NETWORK,
                        f"{exc} after {failures} attempts; run this script again later: the download resumes",
                    ) from None
                self.backoff(failures, exc)
        return wanted

    def request_piece(self, first: int, last: int) -> Response:
        f = self.fetcher
        for _ in range(MAX_RESOLVES + 1):
            with f.lock:
                url, generation = f.resolved, f.generation
            answer = f.request(url, first, last)
            if answer.status in (401, 403, 410) and url != f.url:
                f.discard(answer)
                self.re_resolve(generation)
                continue
            try:
                check_answer(answer, first, last, self.plan.size if self.plan else None)
            except Stop as exc:
                f.discard(answer)
                raise auth_stop(exc) from None
            except Retry:
                f.discard(answer)
                raise
            validator = strong_validator(answer)
            if f.validator and validator and validator != f.validator:
                f.discard(answer)
                raise Stop(
                    NETWORK,
                    "the file changed on the server during the download; run this script again",
                    restart=True,
                )
            return answer
        raise Stop(NETWORK, "the download link kept expiring; run this script again")

    def re_resolve(self, generation: int) -> None:
        """The signed URL expired: one connection resolves the original again, the others wait for it."""
        f = self.fetcher
        with f.resolve_lock:
            with f.lock:
                if f.generation != generation:
                    return  # another connection already did it
                if f.resolves >= MAX_RESOLVES:
                    raise Stop(
                        NETWORK,
                        f"the download link kept expiring ({f.resolves} times); run this script again",
                    )
                f.resolves += 1
            answer = f.resolve(0, 0)
            try:
                check_answer(answer, 0, 0, self.plan.size if self.plan else None)
            except Stop as exc:
                raise auth_stop(exc) from None
            finally:
                f.discard(answer)
            with f.lock:
                f.resolved = answer.url
                f.generation += 1
        say("the signed download link expired; resolved it again from the original URL")

    def read_body(self, answer: Response, piece: Piece, buf: bytearray) -> None:
        """Read the answer into the part: blocks of up to 1 MiB, each written once it is full."""
        view = memoryview(buf)
        fd = self.fd
        assert self.plan is not None
        progress = self.plan.progress
        try:
            while piece.done < piece.end - piece.start:
                pos = piece.start + piece.done
                want = min(len(buf), piece.end - pos)  # `end` may shrink meanwhile: a steal
                n = 0
                while n < want:
                    got = answer.readinto(view[n:want])
                    if not got:
                        break
                    n += got
                written = 0
                while written < n:
                    try:
                        written += os.pwrite(fd, view[written:n], pos + written)
                    except OSError as exc:
                        raise Stop(
                            WRITE, f"cannot write {self.part} (disk full?): {exc.strerror or exc}"
                        ) from None
                piece.done += n
                progress.set()
                if n < want:
                    raise Retry("the connection closed early")
        except Stop:
            self.fetcher.drop(answer.url)
            raise
        except Exception as exc:  # OSError, a timeout, an early end
            self.fetcher.drop(answer.url)
            if self.fetcher.stopping:
                raise Stop(INTERRUPTED, "interrupted") from None
            raise Retry(f"network error: {exc or type(exc).__name__}") from None
        # Kept alive when read to its end; closed when the piece was cut short by a steal.
        self.fetcher.done_with(answer)

    # -- the hash -------------------------------------------------------------------------------------
    def hash_thread(self) -> None:
        try:
            self.hash_prefix()
        except BaseException as exc:
            self.hash_error = exc

    def hash_prefix(self) -> None:
        """sha256 of the file, following the contiguous prefix on disk as it grows.

        The part is mapped rather than read: hashing from the page cache without a copy costs a
        fifth less CPU on a 256 MiB file (preadv is the fallback where mapping fails).
        """
        plan = self.plan
        assert plan is not None
        h = hashlib.sha256()
        try:
            import mmap

            mapped: Any = mmap.mmap(self.fd, plan.size, prot=mmap.PROT_READ)
        except (ImportError, OSError, ValueError, OverflowError):
            mapped = None
        buf = bytearray(0 if mapped is not None else 4 * MIB)
        view = memoryview(mapped if mapped is not None else buf)
        pos = 0
        try:
            while pos < plan.size:
                plan.progress.clear()  # before reading the prefix: a write after it wakes the wait
                end = plan.prefix()
                if end <= pos:
                    if self.stop.is_set():
                        return
                    plan.progress.wait(0.05)
                    continue
                while pos < end:
                    step = min(4 * MIB, end - pos)
                    if mapped is not None:
                        h.update(view[pos : pos + step])
                        pos += step
                        continue
                    n = os.preadv(self.fd, [view[:step]], pos)
                    if n <= 0:
                        raise OSError(f"unexpected end of file at byte {pos}")
                    h.update(view[:n])
                    pos += n
        finally:
            view.release()
            if mapped is not None:
                mapped.close()
        self.sha256 = h.hexdigest()

    def report(self) -> int:
        assert self.plan is not None
        if len(self.sha256) != 64:
            raise Stop(WRITE, f"could not compute the sha256 of {self.part}; run this script again")
        self.record.remove()
        sys.stdout.write(f"size {self.plan.size}\nsha256 {self.sha256}\n")
        self.check_format()
        return OK

    def check_format(self) -> None:
        """The script's format check (`checks/formats.py`, its own `main`), run here to spare the
        script another interpreter start; prints `format NAME CODE` (and `why REASON` when it
        fails) for the script to act on."""
        import io

        formats = load_module("comfyfixer_formats", self.formats_py)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = formats.main([self.part, self.name])
        sys.stdout.write(f"format {out.getvalue().strip() or 'unknown'} {code}\n")
        why = " ".join(err.getvalue().replace("comfyfixer: ", "").split())
        if why:
            sys.stdout.write(f"why {why}\n")


def auth_stop(exc: Stop) -> Stop:
    """A 401/403 from the original URL means a login is missing (the script says which token)."""
    if exc.status in (401, 403):
        return Stop(AUTH, f"the server refused access (HTTP {exc.status})", exc.status)
    return exc


def strong_validator(r: Response) -> str:
    etag = r.header("ETag")
    return "" if not etag or etag.startswith("W/") else etag


def settle(job: Download, stop: Stop) -> None:
    """Leave the part as the script expects after a failure: a part without a record is a clean prefix.

    Interrupted and network failures keep the record (the next run resumes every piece). Otherwise
    the part is cut back to the prefix that is all on disk (the single stream appends to it, or the
    script moves it aside) and the record goes, so no hole can ever pass for downloaded bytes.
    """
    if stop.code in (INTERRUPTED, NETWORK, AUTH, WRITE) and not stop.restart:
        return
    keep = 0 if stop.restart else job.stream_prefix()
    if keep >= 0:
        with contextlib.suppress(OSError):
            os.truncate(job.part, keep)
    job.record.remove()


def main(argv: list[str]) -> int:
    if len(argv) != 14:
        say(f"segments: expected 14 arguments, got {len(argv)}")
        return 2
    token = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.readline().strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in token):
        say("the token contains a control character; fix it and run again")
        return 2
    job = Download(argv, token)
    try:
        return job.run()
    except Stop as stop:
        settle(job, stop)
        if stop.code == FALLBACK:
            say(f"using a single connection: {stop.message}")
        elif stop.code != INTERRUPTED:
            say(stop.message)
        if stop.status is not None:
            sys.stdout.write(f"http_status {stop.status}\n")
        return stop.code
    finally:
        if job.fd >= 0:
            os.close(job.fd)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is on disk and reported; the interpreter's teardown (modules, sockets, threads)
    # would only add tens of milliseconds to every download.
    os._exit(code)
