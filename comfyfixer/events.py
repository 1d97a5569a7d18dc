"""Events the core emits so the CLI can show progress without the core ever printing.

A sink is any callable taking an `Event`; `null_sink` drops them. Events are small frozen
dataclasses; the CLI matches on their type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    pass


@dataclass(frozen=True, slots=True)
class Notice(Event):
    """A one-line message for the user (for example: the LLM endpoint is not configured)."""

    message: str
    level: str = "info"  # info | warning | error


@dataclass(frozen=True, slots=True)
class SearchStarted(Event):
    index: int
    total: int
    name: str
    directory: str | None


@dataclass(frozen=True, slots=True)
class SearchFinished(Event):
    index: int
    total: int
    name: str
    outcome: str
    source: str | None
    reason: str
    where: str = ""  # the chosen file's repo / model / host+path when found: "found on <source>: <where>"


@dataclass(frozen=True, slots=True)
class AgentAsked(Event):
    """The LLM agent starts on one model ("asking Qwen about <name> …")."""

    name: str
    llm_model: str


@dataclass(frozen=True, slots=True)
class AgentConcluded(Event):
    """What the LLM agent concluded for one model: its outcome, where the file is, or why not."""

    name: str
    outcome: str  # found | confirmed | ambiguous | not_found | kept | source_error
    source: str | None  # huggingface | civitai | catalogue | ... for found/confirmed
    where: str  # repo/path or URL for found/confirmed; "" otherwise
    reason: str
    seconds: float
    tool_calls: int


@dataclass(frozen=True, slots=True)
class DownloadStarted(Event):
    key: str
    name: str
    script: str
    part_path: str
    expected_size: int | None


@dataclass(frozen=True, slots=True)
class DownloadProgress(Event):
    key: str
    name: str
    done: int
    total: int | None
    speed: float  # bytes per second
    eta: float | None


@dataclass(frozen=True, slots=True)
class DownloadFinished(Event):
    key: str
    name: str
    outcome: str
    reason: str


@dataclass(frozen=True, slots=True)
class VerificationPass(Event):
    count: int
    llm: bool
    suspicious: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ModelDone(Event):
    """One planned model reached its final outcome in this run (for the overall [i/N] display)."""

    index: int
    total: int
    name: str
    outcome: str
    reason: str


EventSink = Callable[[Event], None]


def null_sink(event: Event) -> None:
    """Drop the event: for callers that do not show progress."""
