"""The response body of a bounded request: the whole-request deadline, gzip/deflate decoded in bounded
steps (a bomb is stopped at the cap, never expanded whole) and the size cap, applied per chunk."""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator
from typing import Any

from comfyfixer.transport import MB
from comfyfixer.transport.backend import thread_deadline
from comfyfixer.transport.stacks import Stack


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


class BoundedBody:
    """The response body: the whole-request deadline, decoding and the size cap applied per chunk."""

    def __init__(
        self, inner: Any, stack: Stack, host: str, deadline: float, cap: int, encoding: str | None
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
            thread_deadline.at = self._deadline
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
                thread_deadline.at = None
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
