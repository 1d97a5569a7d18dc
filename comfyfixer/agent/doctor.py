"""The endpoint check: can the configured OpenAI-compatible server run the agent, and how?

`check_endpoint(settings)` lists the models, then makes one tool call, and returns an `EndpointStatus`:
ok or not with a plain reason and the error behind it (`cli/errors.py` words the fix), the model used,
whether the server takes `tools`, which protocol the model's calls came in (native `tool_calls`, or
one of the text shapes `parsing` reads), and the thinking switch the server accepted. It never raises
and is bounded by the per-model time (`COMFYFIXER_LLM_TIMEOUT`), since a CPU model's first answer
takes tens of seconds. `comfyfixer doctor` shows it; a run does not wait for it: its first real
request is the health probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from comfyfixer.agent.client import ChatClient, ToolsUnsupported, make_openai_client
from comfyfixer.agent.dialect import ThinkingSwitch
from comfyfixer.agent.parsing import SHAPE_WORDS, text_tool_calls
from comfyfixer.agent.tools import strip_titles
from comfyfixer.errors import LLMError, LLMModelMissing, LLMNotConfigured, redact
from comfyfixer.events import Notice
from comfyfixer.retry import RetryPolicy

if TYPE_CHECKING:
    from openai import OpenAI

    from comfyfixer.config import Settings

FailedStep = Literal["client", "listing", "chat"]


_TEXT_PING = (
    "The server has no tool support: call a tool by replying with only "
    '{"tool": "<name>", "arguments": {...}}. Tools: ping(word: string).'
)


class Ping(BaseModel):
    """Confirm that tool calling works."""

    model_config = ConfigDict(extra="forbid")

    word: str = Field(description="The word to send back")


def _ping_tool() -> dict[str, object]:
    return {
        "type": "function",
        "function": {
            "name": "ping",
            "description": " ".join((Ping.__doc__ or "").split()),
            "parameters": strip_titles(Ping.model_json_schema()),
        },
    }


@dataclass(frozen=True)
class EndpointStatus:
    ok: bool
    reason: str
    configured: bool = True
    base_url: str | None = None
    model: str | None = None
    models: tuple[str, ...] = ()
    supports_tools: bool | None = None  # the server takes `tools` (False: the agent's text protocol)
    protocol: str | None = None  # how the ping came back: a `parsing.SHAPE_WORDS` key, or None
    thinking: ThinkingSwitch | None = None
    seconds: float = 0.0
    error: LLMError | None = None  # why it does not work
    failed_at: FailedStep | None = None

    @property
    def tool_calling(self) -> bool:
        """Whether the model called the tool in a shape the agent reads."""
        return self.protocol is not None

    @property
    def protocol_words(self) -> str:
        if self.protocol is None:
            return "no tool call seen; the agent uses its JSON-in-text protocol"
        words = SHAPE_WORDS.get(self.protocol, self.protocol)
        return words if self.supports_tools else f"{words}, over the agent's text protocol"

    def notice(self) -> Notice:
        """The one line the run shows about the LLM before it starts."""
        if self.ok:
            return Notice(f"LLM agent: {self.model} at {self.base_url} ({self.protocol_words})")
        if not self.configured:
            return Notice("LLM agent: no endpoint configured; direct sources only")
        return Notice(f"LLM agent unavailable ({self.reason}); direct sources only", "warning")


def check_endpoint(
    settings: Settings,
    *,
    client: OpenAI | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> EndpointStatus:
    """List the models and make one tool call against the configured endpoint. Never raises.

    Bounded by `timeout` seconds in all (default: the per-model time, `settings.llm_timeout`)."""
    if not settings.llm_base_url:
        return EndpointStatus(False, "no LLM endpoint configured", configured=False, error=LLMNotConfigured())
    base_url = redact(settings.llm_base_url, settings.secrets)
    started = time.monotonic()
    budget = timeout if timeout is not None else settings.llm_timeout
    owned = client is None
    try:
        openai_client = client if client is not None else make_openai_client(settings, timeout=budget)
    except LLMError as exc:
        return EndpointStatus(False, exc.message, base_url=base_url, error=exc, failed_at="client")
    try:
        return _check(settings, openai_client, base_url, retry, started, started + budget)
    finally:
        if owned:
            openai_client.close()


def _check(
    settings: Settings,
    client: OpenAI,
    base_url: str,
    retry: RetryPolicy | None,
    started: float,
    deadline: float,
) -> EndpointStatus:
    chat = ChatClient(client, settings.llm_model or "", retry=retry, secrets=settings.secrets, max_tokens=256)

    def status(
        ok: bool,
        reason: str,
        *,
        supports_tools: bool | None = None,
        protocol: str | None = None,
        error: LLMError | None = None,
        failed_at: FailedStep | None = None,
    ) -> EndpointStatus:
        return EndpointStatus(
            ok,
            reason,
            base_url=base_url,
            model=chat.model or None,
            models=tuple(models),
            supports_tools=supports_tools,
            protocol=protocol,
            thinking=chat.thinking,
            seconds=round(time.monotonic() - started, 2),
            error=error,
            failed_at=failed_at,
        )

    models: list[str] = []
    listing_note = ""
    try:
        models = chat.list_models(deadline=deadline)
    except LLMError as exc:
        if exc.status is None or not chat.model:
            return status(False, f"cannot list models: {exc.message}", error=exc, failed_at="listing")
        listing_note = f" (listing models failed: {exc.message})"  # some proxies have no /models; go on
    if not chat.model:
        if not models:
            missing = LLMModelMissing()
            return status(False, missing.message, error=missing, failed_at="listing")
        chat.model = models[0]
        listing_note = f" (COMFYFIXER_LLM_MODEL not set; using the first listed model, {models[0]})"
    elif models and chat.model not in models:
        listing_note = f" (note: {chat.model} is not among the {len(models)} listed models)"
    messages = [
        {"role": "system", "content": "You are a connectivity check. Call the tool you are given."},
        {"role": "user", "content": 'Call the tool "ping" with word "ready".'},
    ]
    try:
        reply = chat.complete(messages, tools=[_ping_tool()], deadline=deadline)
    except ToolsUnsupported as exc:
        return _text_protocol(chat, messages, deadline, exc.message + listing_note, status)
    except LLMError as exc:
        reason = f"the chat request failed: {exc.message}" + listing_note
        return status(False, reason, error=exc, failed_at="chat")
    calls = [c for c in reply.tool_calls or text_tool_calls(reply.content) if c.name == "ping"]
    if calls:
        shape = calls[0].shape
        return status(
            True,
            f"works; tool calling: {SHAPE_WORDS[shape]}" + listing_note,
            supports_tools=True,
            protocol=shape,
        )
    return status(
        True,
        "answers, but did not call the tool; the agent will ask it for calls in its text protocol"
        + listing_note,
        supports_tools=True,
    )


def _text_protocol(
    chat: ChatClient,
    messages: list[dict[str, str]],
    deadline: float,
    why: str,
    status: Callable[..., EndpointStatus],
) -> EndpointStatus:
    """The server refused `tools`: check that the model writes a call the agent's text protocol reads."""
    asked = [
        {"role": "system", "content": messages[0]["content"] + " " + _TEXT_PING},
        messages[1],
    ]
    try:
        reply = chat.complete(asked, deadline=deadline)
    except LLMError as exc:
        return status(False, f"the chat request failed: {exc.message}", error=exc, failed_at="chat")
    calls = [c for c in text_tool_calls(reply.content) if c.name == "ping"]
    protocol = calls[0].shape if calls else None
    said = f"the model writes {SHAPE_WORDS[protocol]}" if protocol else "the model did not call the tool"
    return status(
        True,
        f"works, without native tool calling ({why}); {said}; the agent uses its text protocol",
        supports_tools=False,
        protocol=protocol,
    )
