"""The threaded loopback HTTP server every fake builds on.

Owns: binding 127.0.0.1 on a free port, start/stop (also as a context manager), the request log,
byte counting per path, scripted failures ("answer 503 twice, then behave") and the small
`Exchange` API the fakes use to read a request and write a reply (HEAD handled once, here).

Stopping is clean on purpose: `pytest -W error` turns a leaked socket into a failure, so `stop()`
closes the listener, shuts down every open keep-alive connection and joins the handler threads.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import socket
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

HeaderList = list[tuple[str, str]]
Headers = Mapping[str, str] | Iterable[tuple[str, str]]

HOST = "127.0.0.1"


def _header_list(headers: Headers | None) -> HeaderList:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    return [(str(k), str(v)) for k, v in headers]


def truthy(value: str | None) -> bool:
    """Query/form booleans: hub 1.x+ sends `true`, hub 0.x sends `True`; accept both (and `1`)."""
    return (value or "").strip().lower() in ("true", "1", "yes")


@dataclass
class RecordedRequest:
    """One request as it arrived: what tests assert on (`headers` keys are lower-case)."""

    method: str
    path: str  # percent-decoded path, no query
    raw_path: str  # path as sent, no query
    query: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # filled in just before the reply is sent

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def range(self) -> str | None:
        return self.headers.get("range")

    @property
    def host(self) -> str | None:
        return self.headers.get("host")


@dataclass
class FailureScript:
    """Answer requests whose path matches `pattern` (fnmatch) with `status`, `times` times (None: always)."""

    pattern: str
    status: int
    times: int | None = 1
    headers: HeaderList = field(default_factory=list)
    body: bytes = b""
    methods: frozenset[str] | None = None
    used: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if self.methods is not None and method not in self.methods:
            return False
        return fnmatch.fnmatchcase(path, self.pattern)


class Exchange:
    """One request being answered. Read `method`, `path`, `param()`, `body`; reply with one of the helpers."""

    def __init__(self, handler: _Handler, fake: FakeServer, record: RecordedRequest) -> None:
        self._handler = handler
        self._fake = fake
        self.record = record
        self.method = record.method
        self.path = record.path
        self.raw_path = record.raw_path
        self.query: dict[str, list[str]] = record.params
        self.headers: Message = handler.headers
        self.body = record.body
        self.headers_sent = False
        self.dropped = False

    # -- reading ---------------------------------------------------------------------------
    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def params(self, name: str) -> list[str]:
        return list(self.query.get(name, []))

    def flag(self, name: str) -> bool:
        return truthy(self.param(name))

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def base_url(self) -> str:
        """The origin the client used (`http://127.0.0.1:P` or `http://localhost:P`), for self-links."""
        return f"http://{self.headers.get('host') or f'{HOST}:{self._fake.port}'}"

    @property
    def is_head(self) -> bool:
        return self.method == "HEAD"

    # -- writing ---------------------------------------------------------------------------
    def start(self, status: int, headers: Headers | None = None) -> None:
        """Send the status line and headers. The caller must have set Content-Length (or will drop)."""
        h = self._handler
        # Recorded before anything is sent: a client may read the request log as soon as it has the answer.
        self.record.status = status
        h.send_response(status)
        for name, value in _header_list(headers):
            h.send_header(name, value)
        h.end_headers()
        self.headers_sent = True

    def write(self, data: bytes | memoryview) -> None:
        """Write body bytes (nothing on HEAD); counted per path in `FakeServer.bytes_sent`."""
        if self.is_head or not data:
            return
        # Counted first, like the status: the client may look at the count as soon as it has the bytes.
        self._fake._count(self.path, len(data))
        self._handler.wfile.write(data)

    def reply(
        self,
        status: int,
        body: bytes | str = b"",
        headers: Headers | None = None,
        content_type: str | None = "text/plain; charset=utf-8",
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        out = _header_list(headers)
        names = {k.lower() for k, _ in out}
        if content_type and "content-type" not in names and status not in (204, 304):
            out.append(("Content-Type", content_type))
        if "content-length" not in names and status not in (204, 304):
            out.append(("Content-Length", str(len(data))))
        self.start(status, out)
        if status not in (204, 304):
            self.write(data)

    def json(self, status: int, obj: Any, headers: Headers | None = None) -> None:
        self.reply(status, json.dumps(obj).encode(), headers, content_type="application/json; charset=utf-8")

    def drop(self) -> None:
        """Cut the connection now (after whatever was already written): a mid-transfer network failure."""
        self.dropped = True
        self._handler.close_connection = True
        try:
            self._handler.wfile.flush()
            self._handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def wait(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; True when it is stopping (the caller should give up)."""
        return self._fake._stopping.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and Content-Length, as real servers do
    # Small answers would otherwise wait ~40 ms for Nagle + delayed ACK on every request.
    disable_nagle_algorithm = True
    server_version = "fake"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection must not pin a thread forever
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # the request log replaces stderr noise
        pass

    def _dispatch(self) -> None:
        self.server.fake._dispatch(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # so server_close() joins the handler threads
    block_on_close = True

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((HOST, 0), _Handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def close_open_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-body is normal for a download server; anything else is a bug.
        err = sys.exc_info()[1]
        if isinstance(err, (ConnectionError, TimeoutError, OSError)):
            return
        self.fake.errors.append(traceback.format_exc())


_Server = TypeVar("_Server", bound="FakeServer")


class FakeServer:
    """Base of the fakes: subclasses implement `handle(ex)`. Use as `with Fake() as f: f.url`."""

    name = "fake"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: list[RecordedRequest] = []
        self._sent: Counter[str] = Counter()
        self._scripts: list[FailureScript] = []
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []  # tracebacks of handler bugs; fixtures fail the test on them

    # -- lifecycle -------------------------------------------------------------------------
    def start(self: _Server) -> _Server:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name=f"{self.name}-server"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        if self._thread is not None:
            self._thread.join()
        httpd.close_open_connections()
        httpd.server_close()  # joins handler threads

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{self.name} is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT` (no trailing slash)."""
        return f"http://{HOST}:{self.port}"

    @property
    def alt_url(self) -> str:
        """The same server as `http://localhost:PORT`: same socket, different origin."""
        return f"http://localhost:{self.port}"

    # -- request log -----------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def requests_to(self, path_pattern: str, method: str | None = None) -> list[RecordedRequest]:
        """Logged requests whose decoded path matches an fnmatch pattern (and method, if given)."""
        return [
            r
            for r in self.requests
            if fnmatch.fnmatchcase(r.path, path_pattern) and (method is None or r.method == method)
        ]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._sent.clear()

    def bytes_sent(self, path: str | None = None) -> int:
        """Body bytes actually written (per decoded path, or in total)."""
        with self._lock:
            return sum(self._sent.values()) if path is None else self._sent.get(path, 0)

    @property
    def authorization_seen(self) -> list[str]:
        """Every Authorization header that reached this server (a CDN/storage fake must see none)."""
        return [r.authorization for r in self.requests if r.authorization]

    def _count(self, path: str, n: int) -> None:
        with self._lock:
            self._sent[path] += n

    # -- scripted failures -----------------------------------------------------------------
    def fail(
        self,
        pattern: str,
        status: int,
        *,
        times: int | None = 1,
        headers: Headers | None = None,
        body: bytes | str | Mapping[str, Any] | list[Any] = b"",
        methods: Iterable[str] | None = None,
    ) -> FailureScript:
        """Answer the next `times` requests whose decoded path matches `pattern` with `status`.

        A dict/list body is sent as JSON; a str as text/plain. Scripts are checked in the order added.
        """
        hdrs = _header_list(headers)
        if isinstance(body, (Mapping, list)):
            data = json.dumps(body).encode()
            hdrs.append(("Content-Type", "application/json; charset=utf-8"))
        else:
            data = body.encode() if isinstance(body, str) else body
        script = FailureScript(
            pattern, status, times, hdrs, data, frozenset(m.upper() for m in methods) if methods else None
        )
        with self._lock:
            self._scripts.append(script)
        return script

    def clear_failures(self) -> None:
        with self._lock:
            self._scripts.clear()

    def _take_script(self, method: str, path: str) -> FailureScript | None:
        with self._lock:
            for script in self._scripts:
                if script.matches(method, path):
                    script.used += 1
                    return script
        return None

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        record = RecordedRequest(
            method=handler.command,
            path=unquote(parts.path),
            raw_path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
        )
        with self._lock:
            self._log.append(record)
        ex = Exchange(handler, self, record)
        script = self._take_script(record.method, record.path)
        try:
            if script is not None:
                ex.reply(script.status, script.body, script.headers)
            else:
                self.handle(ex)
                if not ex.headers_sent:
                    ex.reply(500, f"{self.name}: handler sent no reply")
                    self.errors.append(f"{self.name}: no reply for {record.method} {record.path}")
        except (ConnectionError, TimeoutError):
            handler.close_connection = True
        except Exception:
            self.errors.append(traceback.format_exc())
            if not ex.headers_sent:
                ex.reply(500, "fake server error (see FakeServer.errors)")
            else:
                ex.drop()

    def handle(self, ex: Exchange) -> None:
        """Answer one request. Subclasses override."""
        ex.reply(404, "not found")
