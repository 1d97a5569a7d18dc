"""Shared HTTP plumbing for every source: one httpx client, retries with back-off, memoisation, counters.

`build_client` makes the one `httpx.Client` a run uses (timeouts, a non-browser user agent, no
automatic redirects so every hop can be checked). `HttpSession` wraps it with tenacity retries on
429/5xx/timeouts (the run's one `retry.RetryPolicy`, honouring the wait a server asks for), per-run
memoisation of JSON answers (failures are never memoised) and per-source request counters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, retry_if_result, stop_after_attempt

from comfyfixer import __version__
from comfyfixer.errors import SourceError, redact
from comfyfixer.retry import RetryPolicy, requested_wait
from comfyfixer.transport import API_BOUNDS, BoundExceeded, Bounds, Breakers
from comfyfixer.transport.wrapper import bounded_transport, timeout_for

log = logging.getLogger(__name__)

# Must not look like a browser: Civitai then answers a login-only download with a 401 JSON body
# instead of a redirect to an HTML login page.
USER_AGENT = f"comfyfixer/{__version__} (+https://github.com/comfyfixer/comfyfixer)"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


def build_client(
    *,
    bounds: Bounds = API_BOUNDS,
    breakers: Breakers | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The run's HTTP client. Redirects are never followed automatically: callers check each hop.

    Every request is bounded (`comfyfixer.transport`): connect, headers and whole-request deadlines, a
    cap on the decoded body, and the run's per-host breakers.
    """
    return httpx.Client(
        # Only the encodings the bounded transport decodes itself (in steps, capped).
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        timeout=timeout_for("httpx", bounds),
        follow_redirects=False,
        transport=transport or bounded_transport("httpx", bounds=bounds, breakers=breakers),
    )


def hub_client(breakers: Breakers | None = None, *, bounds: Bounds = API_BOUNDS) -> Any:
    """An `httpx2.Client` for huggingface_hub (`set_client_factory`) or the openai SDK, bounded like ours.

    Without it the Hub's shared client has no timeout at all: a stalled Hub would hang the run.
    """
    import httpx2

    return httpx2.Client(
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        timeout=timeout_for("httpx2", bounds),
        follow_redirects=True,
        transport=bounded_transport("httpx2", bounds=bounds, breakers=breakers),
    )


class RequestCounter:
    """API requests per source for the run, and for the model being searched now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_source: Counter[str] = Counter()
        self.current = 0
        self.models = 0
        self.model_total = 0

    def add(self, source: str, n: int = 1) -> None:
        with self._lock:
            self.by_source[source] += n
            self.current += n

    def begin_model(self) -> None:
        with self._lock:
            self.current = 0

    def end_model(self) -> int:
        """Close the current model's count and return it."""
        with self._lock:
            self.models += 1
            self.model_total += self.current
            return self.current

    @property
    def total(self) -> int:
        return sum(self.by_source.values())

    @property
    def average_per_model(self) -> float:
        return self.model_total / self.models if self.models else 0.0


def _memo_key(method: str, url: str, params: Mapping[str, Any] | None) -> tuple[str, str, tuple[Any, ...]]:
    items: tuple[Any, ...] = ()
    if params:
        items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))
    return (method, url, items)


class HttpSession:
    """An `httpx.Client` with retries, per-run memoisation of JSON answers and request counting."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        policy: RetryPolicy | None = None,
        counter: RequestCounter | None = None,
        secrets: tuple[str, ...] = (),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.policy = policy or RetryPolicy()
        self.counter = counter or RequestCounter()
        self._secrets = secrets
        self._sleep = sleep
        self._memo: dict[tuple[str, str, tuple[Any, ...]], Any] = {}
        self._memo_lock = threading.Lock()

    def _wait(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            response: httpx.Response = outcome.result()
            asked = requested_wait(response.headers, response.status_code)
            return self.policy.wait(state.attempt_number, asked)
        return self.policy.backoff(state.attempt_number)

    def _stop_on_long_wait(self, state: RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or outcome.failed:
            return False
        response: httpx.Response = outcome.result()
        return self.policy.too_long(requested_wait(response.headers, response.status_code))

    def _before_sleep(self, state: RetryCallState) -> None:
        outcome = state.outcome
        wait = state.next_action.sleep if state.next_action else 0.0
        if outcome is None:
            return
        if outcome.failed:
            what = type(outcome.exception()).__name__
        else:
            response: httpx.Response = outcome.result()
            what = f"HTTP {response.status_code}"
            response.close()  # a streamed response being retried must not hold its connection
        log.info("retrying after %s (attempt %d, waiting %.2f s)", what, state.attempt_number, wait)

    def request(
        self,
        method: str,
        url: str,
        *,
        source: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send with retries. Returns the last response (any status); raises SourceError on network failure.

        With `stream=True` the body is not read: the caller must close the response.
        """
        stop = stop_after_attempt(max(1, self.policy.attempts))

        def attempt() -> httpx.Response:
            self.counter.add(source)
            request = self.client.build_request(method, url, params=params, headers=headers)
            log.debug("%s %s", method, redact(str(request.url), self._secrets))
            return self.client.send(request, stream=stream)

        retrying = Retrying(
            stop=lambda state: stop(state) or self._stop_on_long_wait(state),
            wait=self._wait,
            retry=retry_if_exception_type(TRANSIENT_ERRORS)
            | retry_if_result(lambda r: r.status_code in RETRY_STATUSES),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            reraise=True,
        )
        try:
            response: httpx.Response = retrying(attempt)
        except BoundExceeded as exc:  # never retried: a deadline, the size cap or an open breaker
            raise SourceError(
                source, redact(str(exc), self._secrets), url=redact(url, self._secrets)
            ) from exc
        except TRANSIENT_ERRORS as exc:
            raise SourceError(
                source,
                f"{type(exc).__name__} after {self.policy.attempts} attempts: "
                f"{redact(str(exc), self._secrets)}",
                url=redact(url, self._secrets),
            ) from exc
        return response

    def get_json(
        self,
        url: str,
        *,
        source: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        memo: bool = True,
    ) -> Any | None:
        """GET a JSON document. None on 404; SourceError on any other failure. Successes are memoised."""
        key = _memo_key("GET", url, params)
        if memo:
            with self._memo_lock:
                if key in self._memo:
                    return self._memo[key]
        response = self.request("GET", url, source=source, params=params, headers=headers)
        if response.status_code == 404:
            value: Any = None
        else:
            raise_for_source(response, source, secrets=self._secrets)
            try:
                value = response.json()
            except ValueError as exc:
                kind = response.headers.get("content-type", "?")
                raise SourceError(
                    source, f"answered {kind}, not JSON", url=redact(url, self._secrets), status=200
                ) from exc
        if memo:
            with self._memo_lock:
                self._memo[key] = value
        return value


def error_message(response: httpx.Response) -> str:
    """The server's own words about an error: X-Error-Message, or a JSON `error`/`message`, or the text."""
    header = response.headers.get("x-error-message")
    if header:
        return str(header)
    try:
        body = response.json()
    except httpx.ResponseNotRead:
        return ""
    except ValueError:
        text = response.text.strip()
        return "" if "<html" in text[:200].lower() else text[:200]
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "message") if isinstance(body.get(k), str)]
        if isinstance(body.get("error"), dict):
            parts.append(str(body["error"].get("message", "")))
        return ": ".join(p for p in parts if p)
    return ""


def raise_for_source(response: httpx.Response, source: str, *, secrets: tuple[str, ...] = ()) -> None:
    """Turn a non-2xx answer into a SourceError that says rate-limited, server error or auth."""
    status = response.status_code
    if 200 <= status < 300:
        return
    message = error_message(response)
    url = redact(str(response.request.url), secrets) if response.request else ""
    if status == 429:
        text = "rate limited (HTTP 429)"
    elif status >= 500:
        text = f"server error (HTTP {status})"
    elif status in (401, 403):
        text = f"access refused (HTTP {status})"
    else:
        text = f"HTTP {status}"
    if message:
        text = f"{text}: {message}"
    raise SourceError(
        source, redact(text, secrets), url=url, status=status, auth_required=status in (401, 403)
    )
