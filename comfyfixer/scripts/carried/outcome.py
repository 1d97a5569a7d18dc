"""How a segmented download ends: the exit codes it shares with the script, and the two exceptions.

Part of the segmented downloader a script carries (`segments.py`; `loader.py` installs the parts).
Standard library only.
"""

from __future__ import annotations

import os
import sys

OK, FALLBACK, NETWORK, AUTH, NOT_MODEL, SIZE, WRITE, HOST, COMPRESSED = 0, 3, 10, 11, 12, 13, 15, 21, 22
INTERRUPTED = 130
MIB = 1 << 20


class Stop(Exception):
    """Ends the download with an exit code and a sentence for the user."""

    def __init__(self, code: int, message: str, status: int | None = None, *, restart: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.restart = restart  # what is on disk cannot be resumed


class Retry(Exception):
    """A failure worth another attempt (network error, 429/5xx), after `delay` seconds if given."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


def say(message: str) -> None:
    sys.stderr.write(f"comfyfixer: {message}\n")
    sys.stderr.flush()


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default
