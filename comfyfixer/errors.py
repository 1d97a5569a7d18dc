"""The error tree. Errors carry data; `cli/errors.py` turns them into words, a next step and an exit code.

Each error states what happened, built from its fields (`str(exc)` is what logs and recorded reasons
show); what the user should do about it, and the exit code, live only in the table at the CLI edge.

Messages never contain tokens: anything that may hold a URL with a query string goes through
`redact()` before it is stored on an error.
"""

from __future__ import annotations

import re
from typing import Literal

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
    """Base of every error the tool raises on purpose. `message` says what happened."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(ComfyFixerError):
    """A path the user gave cannot be used."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class WorkflowPathError(InputError):
    """A workflow path given on the command line does not exist or cannot be read."""

    def __init__(self, path: str, problem: Literal["missing", "unreadable"]) -> None:
        what = "does not exist" if problem == "missing" else "is not readable"
        super().__init__(f"{path} {what}", path=path)
        self.problem = problem


class ComfyUIRootError(InputError):
    """The ComfyUI folder is missing, unreadable, or has no `models/`. `models_dir_given` is True
    when the path is a models folder itself (it holds `checkpoints/`), so its parent was meant."""

    def __init__(self, path: str, problem: str, *, models_dir_given: bool = False) -> None:
        super().__init__(problem, path=path)
        self.models_dir_given = models_dir_given


class ExtraPathsError(InputError):
    """An extra_model_paths.yaml file cannot be read or holds something ComfyUI would reject."""

    def __init__(self, path: str, problem: str, *, line: int | None = None) -> None:
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}", path=path)
        self.problem = problem
        self.line = line


class SettingError(InputError):
    """An environment variable holds a value the program cannot use (a timeout that is not a number)."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"{name}={value!r} is not {expected}")
        self.name = name
        self.value = value
        self.expected = expected


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
    ) -> None:
        super().__init__(f"{source}: {redact(message)}")
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
    """A state file cannot be read or written."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StateLocked(StateError):
    """Another run holds the lock (`lock_path`) of a state file."""

    def __init__(self, path: str, reason: str, *, lock_path: str) -> None:
        super().__init__(path, reason)
        self.lock_path = lock_path


class StateDamaged(StateError):
    """A state file holds something this version cannot use; moving it aside lets the run start afresh."""


class StateTooNew(StateError):
    """A state file was written by a newer comfyfixer (its `schema` is above `supported`)."""

    def __init__(self, path: str, *, schema: int, supported: int) -> None:
        super().__init__(
            path, f"was written by a newer comfyfixer (schema {schema}, this version reads up to {supported})"
        )
        self.schema = schema
        self.supported = supported


class LLMError(ComfyFixerError):
    """The OpenAI-compatible endpoint failed or answered something unusable; `status` is its HTTP status
    (None when it could not be reached at all)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(redact(message))
        self.status = status


class LLMUnavailable(LLMError):
    """A request to the endpoint failed for good (after retries): unreachable, refused, or an HTTP error."""


class LLMNotConfigured(LLMError):
    """No LLM endpoint is configured."""

    def __init__(self) -> None:
        super().__init__("no LLM endpoint is configured")


class LLMModelMissing(LLMError):
    """No model is configured and the server lists none."""

    def __init__(self) -> None:
        super().__init__("no model configured and the server lists none")
