"""The piece plan (what is on disk, being fetched, left; handed out in file order) and the resume record.

Part of the segmented downloader a script carries (`segments.py`). Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading

from .outcome import MIB

# Annotations only (postponed): importing typing would cost every download's start ~3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

READ_BLOCK = MIB
MAX_PIECE = 64 * MIB
MIN_STEAL = 512 << 10


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
