"""The network backend under a stack's connection pool: name lookups bounded by the connect budget
(getaddrinfo has no timeout of its own), and streams whose reads and writes never outlast the deadline
of the request the current thread is sending (`thread_deadline`, set by the wrapper and the body)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from comfyfixer.transport import API_BOUNDS, host_key
from comfyfixer.transport.stacks import Stack

# The deadline of the request the current thread is sending; read by the network streams below.
thread_deadline = threading.local()


def _time_left() -> float | None:
    at: float | None = getattr(thread_deadline, "at", None)
    return None if at is None else at - time.monotonic()


class _DeadlineStream:
    """A network stream whose reads and writes never outlast the current request's deadline."""

    def __init__(self, inner: Any, stack: Stack, host: str) -> None:
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


class DeadlineBackend:
    """httpcore's sync backend with bounded name lookups and deadline-aware streams."""

    def __init__(self, inner: Any, stack: Stack) -> None:
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
