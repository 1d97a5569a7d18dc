"""Turns errors into one clear message and an exit code; tracebacks only with COMFYFIXER_DEBUG=1."""

from __future__ import annotations

import os
import sys

from comfyfixer.errors import ComfyFixerError, redact

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def debug_enabled() -> bool:
    return os.environ.get("COMFYFIXER_DEBUG", "") not in ("", "0")


def report(exc: BaseException) -> int:
    """Print `exc` to stderr as a user message; return the exit code it stands for."""
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("Interrupted. Partial downloads were kept; run the same command again to resume.\n")
        return EXIT_INTERRUPTED
    if isinstance(exc, ComfyFixerError):
        sys.stderr.write(f"error: {redact(exc.message)}\n")
        if exc.hint:
            sys.stderr.write(f"  {exc.hint}\n")
        return exc.exit_code
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        sys.stderr.write(f"error: {exc.strerror or exc}{where}\n")
        if getattr(exc, "errno", None) == 28:
            sys.stderr.write("  The disk is full: free some space and run the same command again.\n")
        return EXIT_FAILED
    sys.stderr.write(f"error: unexpected {type(exc).__name__}: {redact(str(exc))}\n")
    sys.stderr.write("  Set COMFYFIXER_DEBUG=1 to see the traceback, and please report it.\n")
    return EXIT_FAILED
