"""The messages the pipeline's worker threads post to the main thread.

The search thread, the verify thread and the per-download exit waiters never touch `status.json`
or the event sink themselves: they put one of these on the main thread's queue, and the main thread,
the only reader, acts on it. So every shared write happens on one thread, without locks.
"""

from __future__ import annotations

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
    report: FileChecks | None


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
