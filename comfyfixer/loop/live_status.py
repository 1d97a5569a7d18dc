"""What a run shows while it runs: each download's bytes and speed, and each model's `status.json` entry.

The main thread owns all of it: it polls the running scripts, measures their speed over a short
window, and writes the entries other processes (`comfyfixer status`) read. Nothing here may stop a
download: a byte count that cannot be read is 0, and a `status.json` that cannot be written is
warned about once.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from comfyfixer.errors import ComfyFixerError, redact
from comfyfixer.loop.result import why
from comfyfixer.loop.stages import DownloadProcess
from comfyfixer.models import Candidate, MissingModel
from comfyfixer.state.store import EntryState, StatusEntry, StatusFile, model_key

log = logging.getLogger(__name__)

SPEED_WINDOW = 5.0  # seconds of samples behind the speed shown (and the ETA)


@dataclass
class ActiveDownload:
    """A download script that is running, with the byte counts its speed is measured over."""

    index: int
    model: MissingModel
    candidate: Candidate
    process: DownloadProcess
    script: Path
    destination: Path
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def speed(self, now: float, done: int) -> float:
        """Bytes per second over the last SPEED_WINDOW seconds; bytes there before a resume do not count."""
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= SPEED_WINDOW:
            self.samples.popleft()
        then, before = self.samples[0]
        return max(done - before, 0) / (now - then) if now > then else 0.0


def downloaded_bytes(process: DownloadProcess) -> int:
    try:
        return process.bytes_done()
    except OSError:
        return 0


class LiveStatus:
    """The entries this run keeps in `status.json`; a state that leaves a field out keeps the last one."""

    def __init__(self, status: StatusFile) -> None:
        self.status = status
        self._warned = False

    def set(
        self,
        model: MissingModel,
        state: EntryState,
        *,
        pid: int | None = None,
        total: int | None = None,
        script: str | None = None,
        bytes_done: int = 0,
        speed: float = 0.0,
        eta: float | None = None,
        reason: str = "",
    ) -> None:
        key = model_key(model.directory, model.name)
        previous = self.status.get(key)
        self.status.set(
            StatusEntry(
                key=key,
                name=model.name,
                directory=model.directory,
                state=state,
                bytes=bytes_done or (previous.bytes if previous else 0),
                total=total if total is not None else (previous.total if previous else None),
                speed=speed,
                eta=eta,
                pid=pid,
                script=script or (previous.script if previous else None),
                reason=redact(reason),
            )
        )

    def flush(self, *, force: bool = False) -> None:
        # status.json is a display aid: failing to write it (full disk, lock held) must not stop downloads.
        try:
            self.status.flush(force=force)
        except (ComfyFixerError, OSError) as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot update %s: %s", self.status.path, why(exc))
