"""The messages the pipeline's worker threads post to the main thread, and the `Inbox` they go through.

The search thread, the verify thread and the per-download exit waiters never touch `status.json`
or the event sink themselves: they put one of these in the main thread's inbox, and the main thread,
the only reader, acts on it. So every shared write happens on one thread, without locks.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass

from comfyfixer import events
from comfyfixer.loop.result import ModelResult, VerificationBatch
from comfyfixer.models import FileChecks, Resolution


@dataclass
class SearchStarted:
    index: int


@dataclass
class SearchDone:
    index: int
    resolution: Resolution


@dataclass
class SearchEnd:
    error: BaseException | None = None


@dataclass
class Verified:
    index: int
    result: ModelResult
    checks: FileChecks


@dataclass
class Reviewed:
    batch: VerificationBatch


@dataclass
class Forward:
    event: events.Event


@dataclass
class Exited:
    index: int


Message = SearchStarted | SearchDone | SearchEnd | Verified | Reviewed | Forward | Exited


class Inbox:
    """The main thread's queue. `forward` is the event sink for collaborators on worker threads (the
    agent): it exists before the pipeline does, so they can be built complete and handed to it."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Message] = queue.Queue()

    def put(self, message: Message) -> None:
        self._queue.put(message)

    def forward(self, event: events.Event) -> None:
        self._queue.put(Forward(event))

    def get(self, timeout: float) -> Message | None:
        """The next message, or None when none came within `timeout` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def get_nowait(self) -> Message | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None
