"""The words a failure is reported in: a model's `reason`, a status entry, a log line.

Shared by the loop and its helpers so that the same error reads the same wherever it shows.
"""

from __future__ import annotations

from comfyfixer.errors import ComfyFixerError, redact
from comfyfixer.stages import ScriptOutcome


def failure_reason(outcome: ScriptOutcome) -> str:
    """The exit code in words, plus the script's own last message when it said one."""
    lines = [line.strip() for line in outcome.log_tail.splitlines() if line.strip()]
    said = [line.removeprefix("comfyfixer: ") for line in lines if line.startswith("comfyfixer: ")]
    detail = said[-1] if said else ""
    reason = f"{outcome.reason} (exit {outcome.returncode})"
    return f"{reason}: {redact(detail)}" if detail else reason


def why(exc: BaseException) -> str:
    if isinstance(exc, ComfyFixerError):
        return exc.message
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    return str(exc)
