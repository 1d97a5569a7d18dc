"""A failed LLM call: whether repeating it may help (`is_transient`, under `LLM_RETRY`) and the server's own
words for it (`describe_error`), with secrets removed.

429 (except `insufficient_quota`), 408/409, 5xx, timeouts and connection errors are transient, unless
the server says `x-should-retry: false` or asks for a wait longer than the policy allows; a broken
deadline, size cap or open breaker (`BoundExceeded`) never is. `openai` is imported only when a call
has failed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from comfyfixer.errors import redact
from comfyfixer.retry import RetryPolicy, requested_wait
from comfyfixer.transport import BoundExceeded

# LLM servers get more tries than the hubs: a loaded local model or a proxy under load answers 429/503
# for a while. The caller's deadline bounds them all.
LLM_RETRY = RetryPolicy(attempts=8, base_wait=1.0, max_backoff=20.0)


def asked_wait(exc: BaseException | None) -> float | None:
    """The wait the server named on a failed call (`retry-after-ms`, `Retry-After`), if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    return requested_wait(headers, getattr(response, "status_code", None))


def _header(exc: BaseException, name: str) -> str | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    value = headers.get(name) if headers is not None else None
    return str(value) if value is not None else None


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call may succeed if repeated (rate limit, server error, network)."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        if (_header(exc, "x-should-retry") or "").lower() == "false":
            return False
        if LLM_RETRY.too_long(asked_wait(exc)):
            return False
        if exc.status_code == 429:
            return exc.code != "insufficient_quota"
        return exc.status_code in (408, 409) or exc.status_code >= 500
    if isinstance(exc.__cause__, BoundExceeded):
        return False  # a deadline or size cap broken, or the host's breaker open: retrying cannot help
    return isinstance(exc, openai.APIConnectionError)  # includes APITimeoutError


def describe_error(exc: BaseException, secrets: Sequence[str] = ()) -> tuple[str, int | None]:
    """The server's own words for a failed call, and its HTTP status; secrets removed."""
    import openai

    status: int | None = None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = exc.body
        if isinstance(body, dict):
            text = str(body.get("message") or json.dumps(body))
        elif isinstance(body, str) and body:
            text = body  # LM Studio: {"error": "<string>"}; the SDK's own message is only "Error code: 400"
        else:
            try:
                text = exc.response.text or exc.message
            except Exception:  # the body may be unreadable; the status is still worth reporting
                text = exc.message
        message = f"HTTP {status}: {text}"
    elif isinstance(exc.__cause__, BoundExceeded):
        message = str(exc.__cause__)
    elif isinstance(exc, openai.APITimeoutError):
        message = "the request timed out"
    elif isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        message = f"cannot connect: {cause}"
    else:
        message = f"{type(exc).__name__}: {exc}"
    return redact(message, tuple(secrets)), status
