"""`bounded_transport`: the wrapper around a stack's `HTTPTransport` that applies every bound of the
package (`comfyfixer.transport`): the host's breaker, the headers deadline, the body's decoding, cap and
whole-request deadline. Also `timeout_for`, the stack's per-read `Timeout` for the same bounds."""

from __future__ import annotations

import time
from typing import Any

from comfyfixer.transport import API_BOUNDS, BoundExceeded, Bounds, Breakers, HostDown, host_key
from comfyfixer.transport.backend import DeadlineBackend, thread_deadline
from comfyfixer.transport.body import BoundedBody
from comfyfixer.transport.stacks import Stack, stack_of

_DECODED_HERE = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}


class _BoundedTransport:
    """Wraps a stack's `HTTPTransport`; see the package docstring. Built by `bounded_transport`."""

    def __init__(self, inner: Any, stack: Stack, bounds: Bounds, breakers: Breakers) -> None:
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
        thread_deadline.at = min(deadline, start + self._bounds.headers)
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
            thread_deadline.at = None
        self._breakers.success(key)
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity") or request.method == "HEAD" or response.status_code in (204, 304):
            body = BoundedBody(response.stream, self._stack, key, deadline, self._bounds.max_body, None)
            headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-encoding"]
        elif encoding in _DECODED_HERE:
            body = BoundedBody(
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
    s = stack_of(stack)
    if inner is None:
        inner = s.http.HTTPTransport()
        pool = inner._pool  # no public hook for the network backend: pinned stacks, checked by tests
        pool._network_backend = DeadlineBackend(pool._network_backend, s)
    base = s.http.BaseTransport
    cls = type("BoundedTransport", (_BoundedTransport, base), {"__module__": __name__})
    return cls(inner, s, bounds, breakers if breakers is not None else Breakers())


def timeout_for(stack: str, bounds: Bounds) -> Any:
    """The stack's per-read `Timeout` matching `bounds`."""
    http = stack_of(stack).http
    return http.Timeout(bounds.read, connect=bounds.connect)
