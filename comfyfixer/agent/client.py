"""The chat client: one OpenAI-compatible `chat.completions` call, made portable across servers.

What differs between servers (the thinking switch, `<think>` blocks, the words of their 400s) is the
`dialect`; this module applies it:

- The thinking switch goes with every request. If a server answers 400 about it, `dialect.switch_after`
  picks the next switch and the call is repeated once; the choice then sticks.
- Thoughts (`<think>` blocks and the `reasoning` / `reasoning_content` fields) are split off: callers
  only ever see the answer; the thoughts are returned separately for the history log.
- Transient failures (`failure.is_transient`) are retried under the one `retry.RetryPolicy`, honouring
  `retry-after-ms` / `Retry-After`, and never past the caller's deadline (the per-model time bound):
  each request's timeout is what is left of it. We retry, the SDK does not (`max_retries=0`, also
  forced on an injected client), so a failure is never retried twice over. Everything that still fails
  becomes an `LLMError` carrying the status and the server's own words (`failure.describe_error`: LM
  Studio's plain-string error body included), with secrets removed.
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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

import tenacity

from comfyfixer.agent.dialect import (
    MAX_TOKENS_REJECTED,
    TOOLS_UNSUPPORTED,
    ThinkingSwitch,
    strip_thinking,
    switch_after,
    switch_body,
    thinking_switch_for,
)
from comfyfixer.agent.failure import LLM_RETRY, asked_wait, describe_error, is_transient
from comfyfixer.errors import LLMError, LLMModelMissing, LLMNotConfigured, LLMUnavailable
from comfyfixer.retry import RetryPolicy
from comfyfixer.transport import LLM_BOUNDS, Breakers

if TYPE_CHECKING:
    from openai import OpenAI

    from comfyfixer.config import Settings

log = logging.getLogger(__name__)

Message = dict[str, Any]

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
                if tools and TOOLS_UNSUPPORTED.search(bad.text):
                    raise ToolsUnsupported(bad.text, status=bad.status) from None
                if not tokens_retried and MAX_TOKENS_REJECTED.search(bad.text):
                    tokens_retried = True
                    self._token_field = "max_completion_tokens"
                    continue
                new_switch = None if switch_retried else switch_after(self.thinking, bad.text)
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
        extra = switch_body(self.thinking)
        if extra:
            kwargs["extra_body"] = extra
        return self._client.chat.completions.create(**kwargs)

    def _left(self, deadline: float | None) -> float:
        return self.request_timeout if deadline is None else deadline - self._clock()

    def _call(self, fn: Callable[[float], Any], *, deadline: float | None) -> Any:
        import openai

        policy = self._retry

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return policy.wait(state.attempt_number, asked_wait(exc))

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
