"""The error tree. Errors carry data; `cli/errors.py` turns them into words and exit codes.

Messages never contain tokens: anything that may hold a URL with a query string goes through
`redact()` before it is stored on an error.
"""

from __future__ import annotations

import re

_SECRET_QUERY = re.compile(r"(?i)([?&](?:token|api_key|apikey|key|sig|signature|x-amz-[a-z-]+)=)[^&#\s]+")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove token-like query values, bearer tokens and any literal secret from a text."""
    out = _SECRET_QUERY.sub(r"\1***", text)
    out = _BEARER.sub(r"\1***", out)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    return out


class ComfyFixerError(Exception):
    """Base of every error the tool raises on purpose. `hint` says what the user can do."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(ComfyFixerError):
    """The command line or the environment is wrong (exit 2)."""

    exit_code = 2


class InputError(ComfyFixerError):
    """A path the user gave cannot be used (exit 2)."""

    exit_code = 2

    def __init__(self, message: str, *, path: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.path = path


class WorkflowError(ComfyFixerError):
    """One workflow file cannot be read; the scan records it and goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class SourceError(ComfyFixerError):
    """A remote source failed (timeout, 429 after retries, 5xx, auth), as opposed to 'not found'."""

    def __init__(
        self,
        source: str,
        message: str,
        *,
        url: str = "",
        status: int | None = None,
        auth_required: bool = False,
        hint: str = "",
    ) -> None:
        super().__init__(f"{source}: {redact(message)}", hint=hint)
        self.source = source
        self.url = redact(url)
        self.status = status
        self.auth_required = auth_required


class UnsafePathError(ComfyFixerError):
    """A name would leave the models folder or cannot be written safely."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"refusing unsafe file name {name!r}: {reason}")
        self.name = name
        self.reason = reason


class StateError(ComfyFixerError):
    """A state file is unreadable or locked by another run."""

    def __init__(self, path: str, reason: str, *, hint: str = "") -> None:
        super().__init__(f"{path}: {reason}", hint=hint)
        self.path = path
        self.reason = reason


class LLMError(ComfyFixerError):
    """The OpenAI-compatible endpoint failed or answered something unusable."""

    def __init__(self, message: str, *, status: int | None = None, hint: str = "") -> None:
        super().__init__(redact(message), hint=hint)
        self.status = status


class Interrupted(ComfyFixerError):
    """Ctrl-C: downloads were stopped, partial files kept for resume, state saved (exit 130)."""

    exit_code = 130
