"""The endpoint check: can the configured OpenAI-compatible server run the agent, and how?

`check_endpoint(settings)` lists the models, then makes one tool call, and returns an `EndpointStatus`:
ok or not with a plain reason and the error behind it (`cli/errors.py` words the fix), the model used,
whether native tool calling works (False means the agent will use its JSON-in-text protocol), and the
thinking switch the server accepted. It never raises; the pipeline runs it once before a run,
`comfyfixer doctor` shows it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from comfyfixer.agent.client import (
    ChatClient,
    RetryPolicy,
    ThinkingSwitch,
    ToolsUnsupported,
    make_openai_client,
)
from comfyfixer.agent.parsing import text_tool_calls
from comfyfixer.agent.tools import strip_titles
from comfyfixer.errors import LLMError, LLMModelMissing, LLMNotConfigured, redact
from comfyfixer.events import Notice

if TYPE_CHECKING:
    from openai import OpenAI

    from comfyfixer.config import Settings

FailedStep = Literal["client", "listing", "chat"]


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
    supports_tools: bool | None = None
    thinking: ThinkingSwitch | None = None
    seconds: float = 0.0
    error: LLMError | None = None  # why it does not work
    failed_at: FailedStep | None = None

    def notice(self) -> Notice:
        """The one line the run shows about the LLM before it starts."""
        if self.ok:
            how = "native tool calls" if self.supports_tools else "JSON-in-text tool protocol"
            return Notice(f"LLM agent: {self.model} at {self.base_url} ({how})")
        if not self.configured:
            return Notice("LLM agent: no endpoint configured; direct sources only")
        return Notice(f"LLM agent unavailable ({self.reason}); direct sources only", "warning")


def check_endpoint(
    settings: Settings,
    *,
    client: OpenAI | None = None,
    retry: RetryPolicy | None = None,
    timeout: float = 30.0,
) -> EndpointStatus:
    """List the models and make one tool call against the configured endpoint. Never raises."""
    if not settings.llm_base_url:
        return EndpointStatus(False, "no LLM endpoint configured", configured=False, error=LLMNotConfigured())
    base_url = redact(settings.llm_base_url, settings.secrets)
    started = time.monotonic()
    owned = client is None
    try:
        openai_client = client if client is not None else make_openai_client(settings, timeout=timeout)
    except LLMError as exc:
        return EndpointStatus(False, exc.message, base_url=base_url, error=exc, failed_at="client")
    try:
        return _check(settings, openai_client, base_url, retry or RetryPolicy(2, 0.5, 2.0), started)
    finally:
        if owned:
            openai_client.close()


def _check(
    settings: Settings, client: OpenAI, base_url: str, retry: RetryPolicy, started: float
) -> EndpointStatus:
    chat = ChatClient(client, settings.llm_model or "", retry=retry, secrets=settings.secrets)

    def status(
        ok: bool,
        reason: str,
        *,
        supports_tools: bool | None = None,
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
            thinking=chat.thinking,
            seconds=round(time.monotonic() - started, 2),
            error=error,
            failed_at=failed_at,
        )

    models: list[str] = []
    listing_note = ""
    try:
        models = chat.list_models()
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
        reply = chat.complete(messages, tools=[_ping_tool()])
    except ToolsUnsupported as exc:
        return status(
            True,
            f"works, without native tool calling ({exc.message}); the agent uses its text protocol"
            + listing_note,
            supports_tools=False,
        )
    except LLMError as exc:
        reason = f"the chat request failed: {exc.message}" + listing_note
        return status(False, reason, error=exc, failed_at="chat")
    if any(c.name == "ping" for c in reply.tool_calls):
        return status(True, "works, with native tool calling" + listing_note, supports_tools=True)
    if text_tool_calls(reply.content):
        return status(
            True,
            "works; the model writes tool calls as text, so the agent uses its text protocol" + listing_note,
            supports_tools=False,
        )
    return status(
        True,
        "answers, but did not call the tool; the agent will use its text protocol" + listing_note,
        supports_tools=False,
    )
