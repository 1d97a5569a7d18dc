"""Bounds on every HTTP request the Python side makes: deadlines, a body cap and a breaker per host.

httpx's `timeout` is per socket read: a server sending one header byte every few seconds, or a body
that never ends, holds a request forever, and a 2 MB gzip answer decompresses to gigabytes in memory.
`bounded_transport` (in `wrapper`) wraps the transport of either HTTP stack the run uses — `httpx` (our
sources) and `httpx2` (huggingface_hub's and openai's clients) — so that for every request:

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

The package, one concept per file:

- `__init__`  the bounds themselves (`Bounds`, `API_BOUNDS`, `LLM_BOUNDS`), `BoundExceeded`, the
              per-host `Breakers` and their `HostDown`: what every client of a run configures and catches.
- `stacks`    the two HTTP stacks (httpx + httpcore, httpx2 + httpcore2) and their bound exception types.
- `backend`   the network backend under a stack's connection pool: bounded name lookups, connects and
              socket reads cut to the current request's deadline.
- `body`      the response body: gzip/deflate decoded in bounded steps, the size cap, the whole-request
              deadline.
- `wrapper`   `bounded_transport`: the wrapper around a stack's `HTTPTransport` that applies all of it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

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
