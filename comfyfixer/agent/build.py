"""Building the agent and the reviewer from Settings, the resolver Finder and an injected OpenAI client.

Both builders return None when no endpoint is configured (or a `status` passed in says it does not
work): the run then uses the direct sources only. A run passes no status: there is no pre-run gate, the
agent's first real request is the health probe, and its failures are handled per model. When no
client is injected one is built here and closed by `Agent.close()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from comfyfixer.agent.client import ChatClient, make_openai_client
from comfyfixer.agent.doctor import EndpointStatus
from comfyfixer.agent.grounding import CandidateValidator
from comfyfixer.agent.history import SearchHistory
from comfyfixer.agent.review import Reviewer
from comfyfixer.agent.search import Agent, AgentLimits
from comfyfixer.agent.sources import Sources
from comfyfixer.events import EventSink, null_sink
from comfyfixer.retry import RetryPolicy

if TYPE_CHECKING:
    from openai import OpenAI

    from comfyfixer.config import Settings


class Finderlike(Sources, Protocol):
    """What `build_agent` needs from `resolvers.Finder`: the sources and the validator."""

    @property
    def validator(self) -> CandidateValidator: ...


def _chat(
    settings: Settings,
    client: OpenAI | None,
    status: EndpointStatus | None,
    retry: RetryPolicy | None,
) -> ChatClient | None:
    if not settings.llm_base_url or (status is not None and not status.ok):
        return None
    # No model configured: the client asks the server's list on its first request.
    model = (status.model if status is not None else None) or settings.llm_model or ""
    return ChatClient(
        client if client is not None else make_openai_client(settings, timeout=settings.llm_timeout),
        model,
        thinking=status.thinking if status is not None else None,
        retry=retry,
        secrets=settings.secrets,
        owns_client=client is None,
    )


def build_agent(
    settings: Settings,
    finder: Finderlike,
    *,
    client: OpenAI | None = None,
    status: EndpointStatus | None = None,
    history_dir: Path | None = None,
    limits: AgentLimits | None = None,
    retry: RetryPolicy | None = None,
    sink: EventSink = null_sink,
) -> Agent | None:
    """The Qwen agent over `finder`'s sources, or None when the LLM cannot be used."""
    chat = _chat(settings, client, status, retry)
    if chat is None:
        return None
    return Agent(
        chat,
        finder,
        validator=finder.validator,
        host_allowed=settings.host_allowed,
        history=SearchHistory(history_dir if history_dir is not None else settings.log_dir, settings.secrets),
        limits=limits or AgentLimits(time_budget=settings.llm_timeout),
        supports_tools=status.supports_tools is not False if status is not None else True,
        secrets=settings.secrets,
        sink=sink,
    )


def build_reviewer(
    settings: Settings,
    *,
    client: OpenAI | None = None,
    status: EndpointStatus | None = None,
    history_dir: Path | None = None,
    retry: RetryPolicy | None = None,
) -> Reviewer | None:
    """The verification-pass reviewer, or None when the LLM cannot be used (pass a client to share it)."""
    chat = _chat(settings, client, status, retry)
    if chat is None:
        return None
    return Reviewer(
        chat,
        history=SearchHistory(history_dir if history_dir is not None else settings.log_dir, settings.secrets),
        secrets=settings.secrets,
        time_budget=settings.llm_timeout,
    )
