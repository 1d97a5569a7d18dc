"""A hostile HTTP server on 127.0.0.1: slow headers, endless bodies, decompression bombs.

Raw sockets (not `http.server`) so it can misbehave at the byte level. Every connection gets the same
behaviour, whatever the path, so it can stand in for the catalogue, the Hub API or an LLM endpoint.

| mode | answer |
|---|---|
| `slow_headers` | a status line and headers dripped one byte per `interval` s, never finished |
| `endless_body` | `200` + `application/json`, then `[` and `0,` forever, `interval` s apart per chunk |
| `gzip_bomb` | `200` + `Content-Encoding: gzip`, a gzip stream of `bomb_size` zero bytes (≈1000:1) |
| `silent` | accepts the connection, reads the request, never answers |
"""

from __future__ import annotations

import functools
import socket
import struct
import threading
import time
import zlib
from typing import Literal

Mode = Literal["slow_headers", "endless_body", "gzip_bomb", "silent"]


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> bytes:
    """A valid gzip stream of `size` zero bytes (a multiple of 1 MiB), ≈1000:1, built in milliseconds.

    After a full flush the compressor's output for the same input block repeats byte for byte, so the
    middle is one compressed block repeated; the trailer (CRC-32, length) is computed for the whole.
    """
    block = bytes(1 << 20)
    n = max(3, size // len(block))
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    middle = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    last = (c.compress(block) + c.flush())[:-8]
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    trailer = struct.pack("<II", crc, (n * len(block)) & 0xFFFFFFFF)
    return first + middle * (n - 2) + last + trailer


class HostileServer:
    def __init__(
        self, mode: Mode, *, interval: float = 0.2, bomb_size: int = 2 << 30, chunk: int = 1024
    ) -> None:
        self.mode = mode
        self.chunk = chunk  # endless_body: bytes per interval
        self.interval = interval
        self._bomb = gzip_bomb(bomb_size) if mode == "gzip_bomb" else b""
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> HostileServer:
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        for t in self._threads:
            t.join(5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _read_request(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                need = int(line.split(b":", 1)[1]) - len(rest)
                while need > 0:
                    chunk = conn.recv(need)
                    if not chunk:
                        return
                    need -= len(chunk)

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._read_request(conn)
            if self.mode == "slow_headers":
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: " + b"a" * 100000
                for byte in head:
                    if self._stop.wait(self.interval):
                        return
                    conn.sendall(bytes([byte]))
            elif self.mode == "endless_body":
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                conn.sendall(head + b"[")
                while not self._stop.wait(self.interval):
                    conn.sendall(b"0," * (self.chunk // 2))
            elif self.mode == "gzip_bomb":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                    + f"Content-Length: {len(self._bomb)}\r\nConnection: close\r\n\r\n".encode()
                    + self._bomb
                )
                time.sleep(0.2)
            else:
                self._stop.wait(600)
        except OSError:
            pass
        finally:
            conn.close()


__all__ = ["HostileServer", "gzip_bomb"]
