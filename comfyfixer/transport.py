"""Bounds on every HTTP request the Python side makes: deadlines, a body cap and a breaker per host.

httpx's `timeout` is per socket read: a server sending one header byte every few seconds, or a body
that never ends, holds a request forever, and a 2 MB gzip answer decompresses to gigabytes in memory.
`bounded_transport` wraps the transport of either HTTP stack the run uses — `httpx` (our sources) and
`httpx2` (huggingface_hub's and openai's clients) — so that for every request:

- name resolution and connecting end within `connect`;
- the status line and headers arrive within `headers` of the start: every socket read is cut to the time
  left, so a slow drip cannot stretch it;
- the whole request, body included, ends within `total`;
- the body is at most `max_body` bytes after decompression (gzip and deflate are decoded here, in bounded
  steps; other encodings are refused), and at most `max_body` on the wire;
- a host that failed `threshold` connections in a row is not called again for the run (`Breakers`).

Breaking any bound raises `BoundExceeded`, which names the host. Per stack it is a subclass of that
stack's `TransportError` but not of its timeout/network errors, so no retry policy (ours, the Hub's,
the SDK's) retries it: the caller reports a `source_error` at once.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

MB = 1024 * 1024


@dataclass(frozen=True)
class Bounds:
    """The limits of one client's requests (seconds, bytes)."""

    connect: float = 10.0  # DNS + TCP (+ TLS) connect
    read: float = 30.0  # one socket read: a stalled server
    headers: float = 30.0  # start → status line and headers received
    total: float = 120.0  # start → last body byte
    max_body: int = 32 * MB  # decoded body; the real catalogue is 0.3 MB, a Hub tree page well under 1 MB


API_BOUNDS = Bounds()
# A local CPU model may think for minutes before the first byte of its answer.
LLM_BOUNDS = Bounds(read=300.0, headers=300.0, total=330.0, max_body=16 * MB)


class BoundExceeded(Exception):
    """A request broke one of its bounds, or its host's breaker is open."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.reason = message


class HostDown(BoundExceeded):
    """The host's breaker is open: it refused or timed out too many connections in a row."""


class Breakers:
    """Per-host circuit breakers shared by every client of a run (thread-safe)."""

    def __init__(self, threshold: int = 3) -> None:
        self.threshold = threshold
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._why: dict[str, str] = {}

    def check(self, host: str) -> None:
        """Raise `HostDown` when `host`'s breaker is open."""
        with self._lock:
            if self._failures.get(host, 0) >= self.threshold:
                raise HostDown(host, f"unreachable ({self._why.get(host, 'connection failed')})")

    def failure(self, host: str, why: str) -> None:
        with self._lock:
            self._failures[host] = self._failures.get(host, 0) + 1
            self._why[host] = why

    def success(self, host: str) -> None:
        with self._lock:
            self._failures.pop(host, None)
            self._why.pop(host, None)

    def trip(self, host: str, why: str) -> None:
        """Open `host`'s breaker now (the start-up probe found it down)."""
        with self._lock:
            self._failures[host] = self.threshold
            self._why[host] = why

    def is_open(self, host: str) -> bool:
        with self._lock:
            return self._failures.get(host, 0) >= self.threshold

    def down(self) -> dict[str, str]:
        """Every host whose breaker is open, with why."""
        with self._lock:
            return {h: self._why.get(h, "") for h, n in self._failures.items() if n >= self.threshold}


def host_key(host: str, port: int | None) -> str:
    return f"{host}:{port}" if port else host


# The deadline of the request the current thread is sending; read by the network streams below.
_deadline = threading.local()


def _time_left() -> float | None:
    at: float | None = getattr(_deadline, "at", None)
    return None if at is None else at - time.monotonic()


class _Stack:
    """One HTTP stack (httpx + httpcore, or httpx2 + httpcore2) and its bound exception types."""

    def __init__(self, http: ModuleType, core: ModuleType) -> None:
        self.http = http
        self.core = core
        self.bound: type[BoundExceeded] = type(
            "BoundExceeded", (BoundExceeded, http.TransportError), {"__module__": __name__}
        )
        self.down: type[BoundExceeded] = type("HostDown", (HostDown, self.bound), {"__module__": __name__})
        # httpx checks that a transport's stream is its own SyncByteStream.
        self.byte_stream: type[Any] = type(
            "BoundedByteStream",
            (http.SyncByteStream,),
            {
                "__init__": lambda self, body: setattr(self, "body", body),
                "__iter__": lambda self: iter(self.body),
                "close": lambda self: self.body.close(),
                "__module__": __name__,
            },
        )

    def error(self, host: str, message: str, *, down: bool = False) -> BoundExceeded:
        cls = self.down if down else self.bound
        exc = cls.__new__(cls)
        BoundExceeded.__init__(exc, host, message)
        return exc


_STACKS: dict[str, _Stack] = {}


def _stack(name: str) -> _Stack:
    if name not in _STACKS:
        import importlib

        core_name = "httpcore2" if name == "httpx2" else "httpcore"
        _STACKS[name] = _Stack(importlib.import_module(name), importlib.import_module(core_name))
    return _STACKS[name]


def stack_errors(name: str) -> tuple[type[BoundExceeded], type[BoundExceeded]]:
    """(bound exceeded, host down) exception classes of the stack `name` ("httpx" or "httpx2")."""
    s = _stack(name)
    return s.bound, s.down


class _DeadlineStream:
    """A network stream whose reads and writes never outlast the current request's deadline."""

    def __init__(self, inner: Any, stack: _Stack, host: str) -> None:
        self._inner = inner
        self._stack = stack
        self._host = host

    def _timeout(self, timeout: float | None) -> float | None:
        left = _time_left()
        if left is None:
            return timeout
        if left <= 0:
            raise self._stack.error(self._host, "no answer within the request's deadline")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return bytes(self._inner.read(max_bytes, self._timeout(timeout)))
        except self._stack.core.ReadTimeout:
            left = _time_left()
            if left is not None and left <= 0.05:
                raise self._stack.error(self._host, "no answer within the request's deadline") from None
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._timeout(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> Any:
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, timeout), self._stack, self._host
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int, timeout: float) -> list[str]:
    """The addresses of `host`, or an error after `timeout` s: getaddrinfo itself has no timeout."""
    result: list[Any] = []

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            result.append(exc)

    worker = threading.Thread(target=lookup, name=f"dns {host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        raise TimeoutError(f"name lookup of {host} took more than {timeout:g} s")
    if isinstance(result[0], OSError):
        raise result[0]
    seen: list[str] = []
    for _family, _type, _proto, _name, addr in result[0]:
        if addr[0] not in seen:
            seen.append(str(addr[0]))
    return seen


class _DeadlineBackend:
    """httpcore's sync backend with bounded name lookups and deadline-aware streams."""

    def __init__(self, inner: Any, stack: _Stack) -> None:
        self._inner = inner
        self._stack = stack

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> _DeadlineStream:
        key = host_key(host, port)
        budget = timeout if timeout is not None else API_BOUNDS.connect
        left = _time_left()
        if left is not None:
            budget = max(0.01, min(budget, left))
        start = time.monotonic()
        core = self._stack.core
        if _is_ip(host):
            addresses = [host]
        else:
            try:
                addresses = _resolve(host, port, budget)
            except TimeoutError as exc:
                raise core.ConnectTimeout(str(exc)) from exc
            except OSError as exc:
                raise core.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            remaining = budget - (time.monotonic() - start)
            if remaining <= 0:
                raise core.ConnectTimeout(f"connecting to {key} took more than {budget:g} s")
            try:
                stream = self._inner.connect_tcp(
                    address,
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (core.ConnectError, core.ConnectTimeout) as exc:
                last = exc
                continue
            return _DeadlineStream(stream, self._stack, key)
        assert last is not None
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        return self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _Decoder:
    """gzip/deflate decoding in bounded steps: a bomb is stopped at the cap, never expanded whole."""

    STEP = 1 * MB

    def __init__(self, encoding: str) -> None:
        # 47 = 32 + 15: zlib detects gzip or zlib headers; raw deflate is tried when that fails.
        self._raw = False
        self._obj = zlib.decompressobj(47) if encoding != "deflate" else zlib.decompressobj(15)
        self._encoding = encoding
        self._first = True

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self._encoding == "deflate" and self._first and data:
            self._first = False
            try:
                zlib.decompressobj(15).decompress(data[:64], 1)
            except zlib.error:
                self._obj = zlib.decompressobj(-15)  # a raw deflate stream, as some servers send
        while data:
            out = self._obj.decompress(data, self.STEP)
            data = self._obj.unconsumed_tail
            if out:
                yield out
            elif not data:
                break

    def flush(self) -> bytes:
        return self._obj.flush()


class _BoundedBody:
    """The response body: the whole-request deadline, decoding and the size cap applied per chunk."""

    def __init__(
        self, inner: Any, stack: _Stack, host: str, deadline: float, cap: int, encoding: str | None
    ) -> None:
        self._inner = inner
        self._stack = stack
        self._host = host
        self._deadline = deadline
        self._cap = cap
        self._decoder = _Decoder(encoding) if encoding else None

    def _check(self, wire: int, decoded: int) -> None:
        if wire > self._cap or decoded > self._cap:
            after = " after decompression" if decoded > wire else ""
            raise self._stack.error(self._host, f"answer larger than {self._cap // MB} MB{after}")
        if time.monotonic() > self._deadline:
            raise self._stack.error(self._host, "answer not complete within the request's deadline")

    def __iter__(self) -> Iterator[bytes]:
        wire = decoded = 0
        chunks = iter(self._inner)
        while True:
            _deadline.at = self._deadline
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except self._stack.core.ReadTimeout:
                if time.monotonic() >= self._deadline - 0.05:
                    raise self._stack.error(
                        self._host, "answer not complete within the request's deadline"
                    ) from None
                raise
            finally:
                _deadline.at = None
            wire += len(chunk)
            if self._decoder is None:
                decoded += len(chunk)
                self._check(wire, decoded)
                yield chunk
                continue
            try:
                for out in self._decoder.feed(chunk):
                    decoded += len(out)
                    self._check(wire, decoded)
                    yield out
            except zlib.error as exc:
                raise self._stack.error(self._host, f"undecodable compressed answer: {exc}") from None
            self._check(wire, decoded)
        if self._decoder is not None:
            tail = self._decoder.flush()
            decoded += len(tail)
            self._check(wire, decoded)
            if tail:
                yield tail

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


_DECODED_HERE = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


class _BoundedTransport:
    """Wraps a stack's `HTTPTransport`; see the module docstring. Built by `bounded_transport`."""

    def __init__(self, inner: Any, stack: _Stack, bounds: Bounds, breakers: Breakers) -> None:
        self._inner = inner
        self._stack = stack
        self._bounds = bounds
        self._breakers = breakers

    def handle_request(self, request: Any) -> Any:
        http = self._stack.http
        url = request.url
        key = host_key(url.host, url.port or (443 if url.scheme == "https" else 80))
        try:
            self._breakers.check(key)
        except HostDown as exc:
            raise self._stack.error(key, exc.reason, down=True) from None
        start = time.monotonic()
        deadline = start + self._bounds.total
        _deadline.at = min(deadline, start + self._bounds.headers)
        try:
            response = self._inner.handle_request(request)
        except (http.ConnectError, http.ConnectTimeout) as exc:
            self._breakers.failure(key, f"{type(exc).__name__}: {exc}")
            raise
        except http.ReadTimeout:
            if time.monotonic() >= min(deadline, start + self._bounds.headers) - 0.05:
                raise self._stack.error(
                    key, f"no complete answer headers within {self._bounds.headers:g} s"
                ) from None
            raise
        except BoundExceeded as exc:
            raise self._stack.error(
                key,
                f"no complete answer headers within {self._bounds.headers:g} s"
                if "deadline" in exc.reason
                else exc.reason,
            ) from None
        finally:
            _deadline.at = None
        self._breakers.success(key)
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity") or request.method == "HEAD" or response.status_code in (204, 304):
            body = _BoundedBody(response.stream, self._stack, key, deadline, self._bounds.max_body, None)
            headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
        elif encoding in _DECODED_HERE:
            body = _BoundedBody(
                response.stream, self._stack, key, deadline, self._bounds.max_body, _DECODED_HERE[encoding]
            )
            headers = [
                (k, v)
                for k, v in response.headers.multi_items()
                if k.lower() not in ("content-encoding", "content-length")
            ]
        else:
            response.close()
            raise self._stack.error(key, f"answered in an encoding this tool does not accept: {encoding!r}")
        return http.Response(
            status_code=response.status_code,
            headers=headers,
            stream=self._stack.byte_stream(body),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> _BoundedTransport:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._inner.__exit__(*exc)


def bounded_transport(
    stack: str = "httpx",
    *,
    bounds: Bounds = API_BOUNDS,
    breakers: Breakers | None = None,
    inner: Any = None,
) -> Any:
    """An `httpx.BaseTransport` (or `httpx2.BaseTransport` for `stack="httpx2"`) with every bound applied.

    `inner` defaults to the stack's own `HTTPTransport`, whose connection pool gets the deadline-aware
    network backend (that is how headers dripped one byte at a time are cut off).
    """
    s = _stack(stack)
    if inner is None:
        inner = s.http.HTTPTransport()
        pool = inner._pool  # no public hook for the network backend: pinned stacks, checked by tests
        pool._network_backend = _DeadlineBackend(pool._network_backend, s)
    base = s.http.BaseTransport
    cls = type("BoundedTransport", (_BoundedTransport, base), {"__module__": __name__})
    return cls(inner, s, bounds, breakers if breakers is not None else Breakers())


def timeout_for(stack: str, bounds: Bounds) -> Any:
    """The stack's per-read `Timeout` matching `bounds`."""
    http = _stack(stack).http
    return http.Timeout(bounds.read, connect=bounds.connect)
