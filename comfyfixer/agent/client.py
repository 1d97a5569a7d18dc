"""The chat client: one OpenAI-compatible `chat.completions` call, made portable across servers.

Owns what differs between OpenAI, DashScope, vLLM, Ollama and LM Studio (see the shared `apis.md` §3.4):

- Thinking is switched off where the server allows. The switch is chosen from the base URL
  (`thinking_switch_for`): DashScope takes top-level `enable_thinking: false`, Ollama
  `reasoning_effort: "none"`, LM Studio and OpenAI get nothing, and everything else (vLLM, SGLang,
  unknown servers) gets `chat_template_kwargs: {enable_thinking: false}`. If a server answers 400 naming
  the switch (or "unrecognized argument"), the switch is dropped and the call repeated once; a DashScope
  "enable_thinking must be set to false" answer selects the DashScope switch. The choice then sticks.
- `<think>` blocks in `content` and the `reasoning` / `reasoning_content` fields are split off: callers
  only ever see the answer; the thoughts are returned separately for the history log.
- 429 (except `insufficient_quota`), 408/409, 5xx, timeouts and connection errors are retried under the
  one `retry.RetryPolicy`, honouring `retry-after-ms` / `Retry-After`, and never past the caller's
  deadline (the per-model time bound): each request's timeout is what is left of it. We retry, the SDK
  does not (`max_retries=0`, also forced on an injected client), so a failure is never retried twice
  over. Everything that still fails becomes an `LLMError` carrying the status and the server's own
  words (LM Studio's plain-string error body included), with secrets removed.
- Every request carries `max_tokens` (`max_completion_tokens` where a server refuses the older name),
  so a runaway answer is bounded.
- With no model configured, the first request asks `GET /models` and uses the first one listed.
- A 400 saying the server cannot do tools raises `ToolsUnsupported`, so the agent can fall back to its
  JSON-in-text protocol.

`openai` is imported lazily: building this module's objects never costs the ~1 s import on the scan path.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

import tenacity

from comfyfixer.errors import LLMError, LLMModelMissing, LLMNotConfigured, LLMUnavailable, redact
from comfyfixer.retry import RetryPolicy, requested_wait
from comfyfixer.transport import LLM_BOUNDS, BoundExceeded, Breakers

if TYPE_CHECKING:
    from openai import OpenAI

    from comfyfixer.config import Settings

log = logging.getLogger(__name__)

ThinkingSwitch = Literal["chat_template_kwargs", "enable_thinking", "reasoning_effort", "none"]
Message = dict[str, Any]

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S | re.I)
_TOOLS_UNSUPPORTED = re.compile(
    r"does not support tools|tool choice requires|tools? (?:is|are) not supported|"
    r"does not support (?:function|tool)|tool[_ ]calling is not (?:supported|enabled)|unsupported.*\btools\b",
    re.I,
)
_SWITCH_REJECTED = re.compile(
    r"unrecognized request argument|extra inputs are not permitted|extra_forbidden|"
    r"unknown (?:parameter|field)|unexpected keyword|not a valid parameter",
    re.I,
)
_DASHSCOPE_NEEDS_SWITCH = re.compile(r"enable_thinking must be set to false", re.I)
_MAX_TOKENS_REJECTED = re.compile(
    r"max_tokens.*(?:not supported|unsupported|max_completion_tokens)", re.I | re.S
)
# LLM servers get more tries than the hubs: a loaded local model or a proxy under load answers 429/503
# for a while. The caller's deadline bounds them all.
LLM_RETRY = RetryPolicy(attempts=8, base_wait=1.0, max_backoff=20.0)
DEFAULT_MAX_TOKENS = 1024
TIME_HINT = "a slow (CPU) model needs more time: raise COMFYFIXER_LLM_TIMEOUT (seconds per model)"
DEFAULT_REQUEST_TIMEOUT = 600.0  # a CPU model's first answer can take minutes; the deadline cuts it shorter


class ToolsUnsupported(LLMError):
    """The server (or the model it serves) rejects `tools`: use the JSON-in-text protocol instead."""


@dataclass(frozen=True)
class ToolCall:
    id: str | None  # None when the model wrote the call into its text (no native tool calling)
    name: str
    arguments: str  # a JSON string as the model produced it: may be invalid
    shape: str = "native"  # how the model wrote it: native, or a text form (for `doctor` and the log)


@dataclass(frozen=True)
class ChatReply:
    content: str  # the answer text, thinking removed
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    reasoning: str | None = None  # what the model thought, for the history log only


def thinking_switch_for(base_url: str) -> ThinkingSwitch:
    """The request field that turns Qwen3 thinking off on the server behind `base_url`."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if "dashscope" in host or host.endswith(".aliyuncs.com"):
        return "enable_thinking"
    if port == 11434 or "ollama" in host:
        return "reasoning_effort"
    if host == "api.openai.com" or port == 1234 or "lmstudio" in host:
        return "none"
    return "chat_template_kwargs"


def _switch_body(switch: ThinkingSwitch) -> dict[str, Any]:
    if switch == "chat_template_kwargs":
        return {"chat_template_kwargs": {"enable_thinking": False}}
    if switch == "enable_thinking":
        return {"enable_thinking": False}
    if switch == "reasoning_effort":
        return {"reasoning_effort": "none"}
    return {}


def strip_thinking(text: str | None) -> tuple[str, str | None]:
    """Split `<think>` blocks off a content string: (answer, thoughts or None)."""
    if not text:
        return "", None
    thoughts = [m.group(0)[7:-8].strip() for m in _THINK_BLOCK.finditer(text)]
    out = _THINK_BLOCK.sub("", text)
    lower = out.lower()
    # Some chat templates put the opening tag in the prompt, so only `</think>` reaches us.
    close = lower.rfind("</think>")
    if close >= 0:
        thoughts.append(out[:close].strip())
        out = out[close + len("</think>") :]
    # A reply cut off mid-thought (finish_reason "length") has an opening tag and nothing after it.
    open_at = out.lower().find("<think>")
    if open_at >= 0:
        thoughts.append(out[open_at + len("<think>") :].strip())
        out = out[:open_at]
    joined = "\n".join(t for t in thoughts if t)
    return out.strip(), joined or None


def _asked_wait(exc: BaseException | None) -> float | None:
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
        if LLM_RETRY.too_long(_asked_wait(exc)):
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


def make_openai_client(
    settings: Settings, *, timeout: float | None = None, breakers: Breakers | None = None
) -> OpenAI:
    """The OpenAI client for the endpoint; SDK retries off, so our tenacity waits are the only ones.

    Its HTTP client is bounded like every other (`comfyfixer.transport`): a whole-request deadline
    (`timeout`, default `LLM_BOUNDS`: a local CPU model may think for minutes) and a cap on the answer.
    """
    from openai import OpenAI

    from comfyfixer.http import hub_client

    if not settings.llm_base_url:
        raise LLMNotConfigured()
    bounds = LLM_BOUNDS
    if timeout is not None:
        bounds = replace(
            LLM_BOUNDS, connect=min(bounds.connect, timeout), read=timeout, headers=timeout, total=timeout
        )
    # Local servers ignore the key, but the SDK insists on a non-empty one.
    return OpenAI(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key or "not-needed",
        max_retries=0,
        timeout=bounds.total,
        http_client=hub_client(breakers, bounds=bounds),
    )


class ChatClient:
    """One model on one endpoint: `complete(messages, tools, deadline)` -> `ChatReply`."""

    def __init__(
        self,
        client: OpenAI,
        model: str,
        *,
        thinking: ThinkingSwitch | None = None,
        retry: RetryPolicy | None = None,
        secrets: Sequence[str] = (),
        temperature: float = 0.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        owns_client: bool = False,
    ) -> None:
        # We retry; the SDK must not retry as well (an injected client may come with its default of 2).
        self._client = client.with_options(max_retries=0) if client.max_retries else client
        self._owner = client
        self._owns_client = owns_client
        self.model = model
        self.thinking: ThinkingSwitch = thinking or thinking_switch_for(str(client.base_url))
        self._retry = retry or LLM_RETRY
        self._secrets = tuple(secrets)
        self._temperature = temperature
        self.max_tokens = max_tokens
        self._token_field = "max_tokens"
        self.request_timeout = request_timeout
        self._sleep = sleep
        self._clock = clock
        self.requests = 0  # chat requests actually sent, retries included

    def close(self) -> None:
        """Close the OpenAI client if this object built it (an injected one belongs to the caller)."""
        if self._owns_client:
            self._owns_client = False
            self._owner.close()

    def list_models(self, *, deadline: float | None = None) -> list[str]:
        """The model ids the server offers (`GET /models`)."""
        try:
            page = self._call(lambda timeout: self._client.models.list(timeout=timeout), deadline=deadline)
        except _BadRequest as bad:
            raise LLMError(bad.text, status=bad.status) from None
        return [m.id for m in page.data]

    def complete(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Message] | None = None,
        deadline: float | None = None,
    ) -> ChatReply:
        """Send one chat request; `ToolsUnsupported`, or `LLMError` after retries within `deadline`."""
        if not self.model:
            self._pick_model(deadline)
        switch_retried = tokens_retried = False
        while True:
            try:
                completion = self._call(
                    lambda timeout: self._create(messages, tools, timeout), deadline=deadline
                )
            except _BadRequest as bad:
                if tools and _TOOLS_UNSUPPORTED.search(bad.text):
                    raise ToolsUnsupported(bad.text, status=bad.status) from None
                if not tokens_retried and _MAX_TOKENS_REJECTED.search(bad.text):
                    tokens_retried = True
                    self._token_field = "max_completion_tokens"
                    continue
                new_switch = None if switch_retried else self._switch_after(bad.text)
                if new_switch is None:
                    raise LLMError(bad.text, status=bad.status) from None
                log.info("LLM server rejected thinking switch %s; using %s", self.thinking, new_switch)
                self.thinking = new_switch
                switch_retried = True
                continue
            return self._reply(completion)

    # -- internals -------------------------------------------------------------------------
    def _pick_model(self, deadline: float | None) -> None:
        models = self.list_models(deadline=deadline)
        if not models:
            raise LLMModelMissing()
        self.model = models[0]
        log.info("COMFYFIXER_LLM_MODEL not set; using the first listed model, %s", self.model)

    def _create(self, messages: Sequence[Message], tools: Sequence[Message] | None, timeout: float) -> Any:
        self.requests += 1
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": cast(Any, list(messages)),
            "temperature": self._temperature,
            self._token_field: self.max_tokens,
            "timeout": timeout,
        }
        if tools:
            kwargs["tools"] = cast(Any, list(tools))
            kwargs["tool_choice"] = "auto"
        extra = _switch_body(self.thinking)
        if extra:
            kwargs["extra_body"] = extra
        return self._client.chat.completions.create(**kwargs)

    def _switch_after(self, text: str) -> ThinkingSwitch | None:
        """The switch to try after a 400 that may be about the switch itself, or None."""
        if _DASHSCOPE_NEEDS_SWITCH.search(text) and self.thinking != "enable_thinking":
            return "enable_thinking"
        if self.thinking == "none":
            return None
        # The switch names are the request keys, so a server complaining about one names it.
        named = self.thinking in text
        return "none" if named or _SWITCH_REJECTED.search(text) else None

    def _left(self, deadline: float | None) -> float:
        return self.request_timeout if deadline is None else deadline - self._clock()

    def _call(self, fn: Callable[[float], Any], *, deadline: float | None) -> Any:
        import openai

        policy = self._retry

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return policy.wait(state.attempt_number, _asked_wait(exc))

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number >= policy.attempts:
                return True
            # No retry whose wait would end past the deadline, nor one with under a second left to answer.
            pause = wait(state)
            return deadline is not None and self._clock() + pause + 1.0 >= deadline

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            text, _ = describe_error(exc, self._secrets) if exc else ("", None)
            log.info(
                "LLM call failed (%s); retry %d in %.2fs", text, state.attempt_number, state.upcoming_sleep
            )

        def attempt() -> Any:
            left = min(self.request_timeout, self._left(deadline))
            if left <= 0:
                raise _OutOfTime
            return fn(max(1.0, left))

        retrying = tenacity.Retrying(
            stop=stop,
            wait=wait,
            retry=tenacity.retry_if_exception(is_transient),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _OutOfTime:
            raise LLMUnavailable(
                f"the time for this model ran out before the LLM answered ({TIME_HINT})"
            ) from None
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            text, status = describe_error(exc, self._secrets)
            raise _BadRequest(text, status) from None
        except openai.OpenAIError as exc:
            text, status = describe_error(exc, self._secrets)
            log.debug("LLM call failed for good: %s", text)
            if isinstance(exc, openai.APITimeoutError):
                text = f"{text} ({TIME_HINT})"
            raise LLMUnavailable(text, status=status) from None

    def _reply(self, completion: Any) -> ChatReply:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise LLMError("the server answered with no choices")
        choice = choices[0]
        message = choice.message
        content, thoughts = strip_thinking(message.content)
        extra = message.model_extra or {}
        reasoning = extra.get("reasoning") or extra.get("reasoning_content")
        if isinstance(reasoning, dict):
            reasoning = json.dumps(reasoning)
        calls = []
        for tc in message.tool_calls or []:
            function = getattr(tc, "function", None)
            if function is None or not getattr(function, "name", None):
                continue
            calls.append(ToolCall(id=tc.id or None, name=function.name, arguments=function.arguments or ""))
        joined = "\n".join(str(t) for t in (reasoning, thoughts) if t) or None
        return ChatReply(
            content=content, tool_calls=calls, finish_reason=choice.finish_reason, reasoning=joined
        )


class _OutOfTime(Exception):
    """Internal: the deadline passed before a request could be sent."""


class _BadRequest(Exception):
    """Internal: a 400/422, which `complete` inspects before turning it into an LLMError."""

    def __init__(self, text: str, status: int | None) -> None:
        super().__init__(text)
        self.text = text
        self.status = status
