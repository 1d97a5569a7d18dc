"""A file server / CDN that caps every *connection* at a fixed rate, as hub CDNs do.

`tests/fakes`' `FileServer` throttles per response and sends its first 1 MiB at once, so a client
asking for many small ranges on one keep-alive connection would beat its cap. Here each connection
has one pacing clock across all its requests: 256 KiB writes, each sent no earlier than the clock
allows, and a connection that idled gets no credit beyond one write. Everything else (Range, 206,
416, ETag, redirects, the byte counter) is `FileServer`'s, so `FakeHub(cdn=CappedServer(...))`
gives a hub whose CDN is capped.
"""

from __future__ import annotations

import time
from typing import Any

from tests.fakes.files import Blob, FileServer, parse_range
from tests.fakes.server import Exchange

WRITE = 256 << 10


class CappedServer(FileServer):
    name = "capped-cdn"

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate  # bytes per second per connection

    def handle(self, ex: Exchange) -> None:
        blob = self.blobs.get(ex.path)
        if blob is None or ex.method != "GET" or blob.data is None:
            super().handle(ex)
            return
        rng = parse_range(ex.header("range"), blob.size)
        if rng == "unsatisfiable":
            ex.reply(416, b"", [("Content-Range", f"bytes */{blob.size}")])
            return
        headers = [
            ("Accept-Ranges", "bytes"),
            ("ETag", blob.strong_etag),
            ("Content-Type", blob.content_type),
        ]
        if isinstance(rng, tuple):
            start, end = rng[0], rng[1] + 1
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{end - 1}/{blob.size}"))
        else:
            start, end, status = 0, blob.size, 200
        headers.append(("Content-Length", str(end - start)))
        ex.start(status, headers)
        self._paced(ex, blob, start, end)

    def _paced(self, ex: Exchange, blob: Blob, start: int, end: int) -> None:
        handler: Any = ex._handler  # one handler object per connection: the pacing clock lives there
        view = memoryview(blob.data or b"")
        step = WRITE / self.rate
        clock = max(getattr(handler, "cap_clock", 0.0), time.monotonic() - step)
        for pos in range(start, end, WRITE):
            delay = clock - time.monotonic()
            if delay > 0 and ex.wait(delay):
                ex.drop()
                return
            piece = view[pos : min(end, pos + WRITE)]
            ex.write(piece)
            clock += len(piece) / self.rate
            handler.cap_clock = clock
