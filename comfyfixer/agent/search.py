"""The agent loop: `Agent.search(model, prior) -> Resolution` for what the direct sources could not settle.

The model talks to the tools (native tool calls, or the JSON-in-text protocol when the server has none)
and ends with a JSON answer validated by pydantic. The answer is then *grounded*:

- a chosen file must be one a tool showed in this conversation (its id, its exact URL, or a repo+path
  `list_repo_files` confirmed) or one the direct search already had;
- its file name must equal the referenced base name (case-insensitive at most);
- its URL must be on an allowed host, and it must pass the same `Validator` as any other candidate.

A rejected answer (invented URL, disallowed host, wrong name, failed validation) is logged and told to
the model, which may try again within the bounds: `AgentLimits` caps turns, tool calls and seconds.

Outcomes when the agent cannot settle it: an ambiguous prior stays ambiguous (its candidates kept); an
endpoint failure is a `source_error` (the search is incomplete, so "not found" would be a lie); after
`max_endpoint_failures` failing models in a row the agent stands down for the run, said once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from comfyfixer.agent.client import ChatClient, ChatReply, Message, ToolCall, ToolsUnsupported
from comfyfixer.agent.history import SearchHistory
from comfyfixer.agent.parsing import extract_json_object, text_tool_calls
from comfyfixer.agent.prompts import SEARCH_PROMPT, SEARCH_TASK_PROMPT, TEXT_TOOLS_PROMPT, render_prompt
from comfyfixer.agent.tools import GroundedFile, Sources, Toolbox, ToolContext
from comfyfixer.errors import ComfyFixerError, LLMError, redact
from comfyfixer.events import EventSink, Notice, null_sink
from comfyfixer.models import Candidate, MissingModel, Resolution, SearchOutcome
from comfyfixer.resolvers.validate import ValidationFailed

log = logging.getLogger(__name__)


class CandidateValidator(Protocol):
    def validate(self, candidate: Candidate) -> Candidate: ...


@dataclass(frozen=True)
class AgentLimits:
    """Bounds of one search: chat turns, tool calls, wall-clock seconds; and the run-wide stand-down."""

    max_turns: int = 8
    max_tool_calls: int = 12
    time_budget: float = 180.0
    max_endpoint_failures: int = 2


class SearchAnswer(BaseModel):
    """The model's final answer (`prompts/search_v1.md`)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    outcome: Literal["found", "ambiguous", "not_found"]
    file_id: str | None = None
    url: str | None = None
    repo_id: str | None = None
    path: str | None = Field(None, validation_alias=AliasChoices("path", "filename", "file"))
    candidate_ids: list[str] = Field(default_factory=list)
    reason: str = ""


@dataclass
class _Search:
    """The state of one conversation."""

    model: MissingModel
    prior: Resolution
    ctx: ToolContext
    deadline: float
    messages: list[Message] = field(default_factory=list)
    logged: int = 0  # messages already written to the history
    turns: int = 0
    tool_calls: int = 0
    requests: int = 0
    evidence: list[str] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return f"{self.model.directory or '?'}/{self.model.file_name}"


class Agent:
    """Searches one missing model at a time with the LLM and the resolver tools."""

    def __init__(
        self,
        chat: ChatClient,
        sources: Sources,
        *,
        validator: CandidateValidator | None,
        host_allowed: Callable[[str], bool],
        history: SearchHistory | None = None,
        limits: AgentLimits | None = None,
        supports_tools: bool = True,
        secrets: Sequence[str] = (),
        sink: EventSink = null_sink,
        toolbox: Toolbox | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chat = chat
        self.sources = sources
        self.validator = validator
        self.host_allowed = host_allowed
        self.history = history or SearchHistory(None)
        self.limits = limits or AgentLimits()
        self.supports_tools = supports_tools
        self.secrets = tuple(secrets)
        self.sink = sink
        self.toolbox = toolbox or Toolbox()
        self.clock = clock
        self._failures = 0
        self.disabled_reason: str | None = None

    @property
    def available(self) -> bool:
        return self.disabled_reason is None

    def close(self) -> None:
        self.chat.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop --------------------------------------------------------------------------------
    def search(self, model: MissingModel, prior: Resolution) -> Resolution:
        """Try to settle `model`; never raises for endpoint, source or model misbehaviour."""
        started = self.clock()
        ctx = ToolContext(target=model, sources=self.sources, secrets=self.secrets)
        s = _Search(model, prior, ctx, deadline=started + self.limits.time_budget)
        if not self.available:
            note = f"LLM agent not used: {self.disabled_reason}"
            return self._keep_prior(s, note) or self._result(s, "source_error", note)
        for c in (prior.candidate, *prior.candidates):
            if c is not None and ctx.matches(c.filename):
                ctx.ledger.add_candidate(c)
        s.messages = [
            {"role": "system", "content": self._system_prompt()},
            {"role": "user", "content": _task(s)},
        ]
        self.history.event(
            s.subject,
            "search",
            {
                "name": model.name,
                "directory": model.directory,
                "prior": prior.outcome,
                "protocol": "tools" if self.supports_tools else "text",
                "model": self.chat.model,
            },
        )
        try:
            result = self._loop(s)
        except Exception as exc:  # a bug here must cost one model's LLM search, not the run
            log.exception("LLM agent failed on %s", model.name)
            result = self._result(s, "source_error", f"LLM agent error: {type(exc).__name__}")
        seconds = self.clock() - started
        self.history.event(
            s.subject,
            "decision",
            {
                "outcome": result.outcome,
                "url": result.candidate.url if result.candidate else None,
                "candidates": [c.url for c in result.candidates],
                "reason": result.reason,
                "turns": s.turns,
                "tool_calls": s.tool_calls,
                "seconds": round(seconds, 2),
            },
        )
        return result

    def _loop(self, s: _Search) -> Resolution:
        while True:
            if s.turns >= self.limits.max_turns:
                return self._gave_up(s, f"no answer within {self.limits.max_turns} turns")
            if self.clock() >= s.deadline:
                return self._gave_up(s, f"time budget of {self.limits.time_budget:.0f}s spent")
            s.turns += 1
            reply = self._ask(s)
            if isinstance(reply, Resolution):
                return reply
            if reply is None:  # switched to the text protocol; ask again
                continue
            calls = reply.tool_calls or text_tool_calls(reply.content)
            if calls:
                self._run_tools(s, reply, calls)
                continue
            outcome = self._conclude(s, reply)
            if outcome is not None:
                return outcome

    def _ask(self, s: _Search) -> ChatReply | Resolution | None:
        tools = self.toolbox.schemas() if self.supports_tools else None
        self.history.event(
            s.subject,
            "request",
            {
                "turn": s.turns,
                "messages": s.messages[s.logged :],
                "tools": [t["function"]["name"] for t in tools] if tools else "text protocol",
                "thinking": self.chat.thinking,
            },
        )
        s.logged = len(s.messages)
        before = self.chat.requests
        try:
            reply = self.chat.complete(s.messages, tools=tools, deadline=s.deadline)
        except ToolsUnsupported as exc:
            s.requests += self.chat.requests - before
            self.history.event(
                s.subject, "fallback", f"server has no tool support ({exc.message}); text protocol"
            )
            self.supports_tools = False
            s.messages[0] = {"role": "system", "content": self._system_prompt()}
            s.logged = 0
            s.turns -= 1  # the refused request produced no answer; the switch happens once per run
            return None
        except LLMError as exc:
            s.requests += self.chat.requests - before
            return self._endpoint_failed(s, exc)
        s.requests += self.chat.requests - before
        self._failures = 0
        self.history.event(
            s.subject,
            "reply",
            {
                "finish_reason": reply.finish_reason,
                "content": reply.content,
                "tool_calls": [{"name": c.name, "arguments": c.arguments} for c in reply.tool_calls],
                "reasoning": (reply.reasoning or "")[:600] or None,
            },
        )
        return reply

    def _run_tools(self, s: _Search, reply: ChatReply, calls: list[ToolCall]) -> None:
        native = [c for c in calls if c.id is not None]
        assistant: Message = {"role": "assistant"}
        if reply.content:
            assistant["content"] = reply.content
        if native:
            assistant["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in native
            ]
        else:
            assistant["content"] = reply.content or ""
        s.messages.append(assistant)
        text_results: list[str] = []
        for call in calls:
            if s.tool_calls >= self.limits.max_tool_calls:
                content = json.dumps({"error": "tool call limit reached: give your final answer now"})
                summary = f"{call.name}: refused, tool call limit reached"
            else:
                s.tool_calls += 1
                result = self.toolbox.run(call.name, call.arguments, s.ctx)
                content, summary = result.content, result.summary
            self.history.event(
                s.subject, "tool", {"name": call.name, "arguments": call.arguments, "result": summary}
            )
            s.evidence.append(f"llm tool {summary}")
            if call.id is not None:
                s.messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
            else:
                text_results.append(f"Result of {call.name}: {content}")
        if text_results:
            s.messages.append({"role": "user", "content": "\n\n".join(text_results)})

    def _conclude(self, s: _Search, reply: ChatReply) -> Resolution | None:
        """Ground the final answer; on rejection tell the model and return None (the loop goes on)."""
        obj = extract_json_object(reply.content)
        problem: str
        if obj is None:
            problem = "your reply contained no JSON object"
        else:
            try:
                answer = SearchAnswer.model_validate(obj)
            except ValidationError as exc:
                problem = "your JSON is not a valid answer: " + "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                )
            else:
                decided = self._ground(s, answer)
                if isinstance(decided, Resolution):
                    return decided
                problem = decided
        self.history.event(s.subject, "rejected", problem)
        s.evidence.append(f"llm answer rejected: {problem}")
        s.messages.append({"role": "assistant", "content": reply.content or ""})
        s.messages.append(
            {
                "role": "user",
                "content": f"Answer rejected: {problem}. Continue, then reply with only the JSON answer.",
            }
        )
        return None

    # -- grounding -------------------------------------------------------------------------------
    def _ground(self, s: _Search, answer: SearchAnswer) -> Resolution | str:
        """A Resolution for a grounded answer, or the reason the answer is rejected."""
        reason = redact(answer.reason, self.secrets)[:500]
        if answer.outcome == "not_found":
            return self._not_found(s, reason)
        if answer.outcome == "ambiguous":
            picks: list[Candidate] = []
            problems: list[str] = []
            for file_id in answer.candidate_ids:
                entry = s.ctx.ledger.by_id(file_id)
                got = self._candidate(s, entry) if entry else f"{file_id!r} is not an id from a tool result"
                if isinstance(got, Candidate):
                    picks.append(got)
                else:
                    problems.append(got)
            if not picks:
                return "none of the candidate_ids is a file a tool showed" + (
                    f" ({problems[0]})" if problems else ""
                )
            return self._result(s, "ambiguous", f"LLM agent: ambiguous: {reason}", candidates=picks)
        entry_or_problem = self._locate(s, answer)
        if isinstance(entry_or_problem, str):
            return entry_or_problem
        got = self._candidate(s, entry_or_problem)
        if isinstance(got, str):
            return got
        try:
            validated = self.validator.validate(got) if self.validator is not None else got
        except ValidationFailed as exc:
            return f"the file at {redact(got.url, self.secrets)} failed validation: {exc.reason}"
        except ComfyFixerError as exc:
            return f"the file could not be checked: {exc.message}"
        chosen = dataclasses.replace(
            validated, source="llm", note=f"chosen by the LLM agent from {entry_or_problem.source}: {reason}"
        )
        return self._result(s, "found", f"LLM agent: {reason}", candidate=chosen, candidates=[chosen])

    def _locate(self, s: _Search, answer: SearchAnswer) -> GroundedFile | str:
        ledger = s.ctx.ledger
        if answer.file_id:
            entry = ledger.by_id(answer.file_id)
            return entry or f"{answer.file_id!r} is not an id from a tool result"
        if answer.url:
            url = answer.url
            if not self.host_allowed(url):
                log.warning("LLM agent proposed a URL on a disallowed host: %s", redact(url, self.secrets))
                return f"the URL {redact(url, self.secrets)} is on a host downloads are not allowed from"
            entry = ledger.by_url(url)
            if entry is None:
                shown = redact(url, self.secrets)
                log.warning("LLM agent invented a URL: %s", shown)
                return f"the URL {shown} appeared in no tool result (invented URLs are never used)"
            return entry
        if answer.repo_id and answer.path:
            entry = ledger.by_repo_path(answer.repo_id, answer.path)
            return entry or f"{answer.repo_id}/{answer.path} was not listed by list_repo_files"
        return "a found answer needs a file_id"

    def _candidate(self, s: _Search, entry: GroundedFile) -> Candidate | str:
        """The candidate behind a ledger entry, checked for name and host; or why it cannot be used."""
        if not s.ctx.matches(entry.file_name):
            return f"{entry.file_name} is not the requested file {s.model.file_name}"
        candidate = entry.candidate
        if candidate is None:
            hub = self.sources.huggingface
            if hub is None or not entry.repo_id or not entry.path:
                return f"{entry.id} cannot be turned into a download"
            try:
                candidate = hub.candidate_for(entry.repo_id, entry.path)
            except ComfyFixerError as exc:
                return f"{entry.id} could not be resolved: {exc.message}"
            entry.candidate = candidate
        if not s.ctx.matches(candidate.filename):
            return f"{candidate.filename} is not the requested file {s.model.file_name}"
        if not self.host_allowed(candidate.url):
            return f"{entry.id} is on a host downloads are not allowed from"
        return candidate

    # -- outcomes --------------------------------------------------------------------------------
    def _result(
        self,
        s: _Search,
        outcome: SearchOutcome,
        reason: str,
        *,
        candidate: Candidate | None = None,
        candidates: list[Candidate] | None = None,
    ) -> Resolution:
        return Resolution(
            model=s.model,
            outcome=outcome,
            candidate=candidate,
            candidates=candidates or [],
            reason=redact(reason, self.secrets),
            evidence=[*s.prior.evidence, *s.evidence],
            requests=s.prior.requests + s.requests,
        )

    def _keep_prior(self, s: _Search, note: str) -> Resolution | None:
        """The direct search's own answer if it had one (found or ambiguous), with the agent's note."""
        prior = s.prior
        if prior.outcome not in ("found", "ambiguous"):
            return None
        return dataclasses.replace(
            prior,
            reason=redact(f"{prior.reason}; {note}" if prior.reason else note, self.secrets),
            candidates=list(prior.candidates),
            evidence=[*prior.evidence, *s.evidence],
            requests=prior.requests + s.requests,
        )

    def _not_found(self, s: _Search, reason: str) -> Resolution:
        kept = self._keep_prior(s, f"LLM agent found nothing better: {reason}")
        if kept is not None:
            return kept
        failed = s.ctx.source_errors or ([s.prior.reason] if s.prior.outcome == "source_error" else [])
        if failed:
            return self._result(s, "source_error", f"nothing found, but a source failed: {failed[0]}")
        return self._result(s, "not_found", f"LLM agent: {reason}" if reason else "LLM agent found nothing")

    def _gave_up(self, s: _Search, why: str) -> Resolution:
        return self._not_found(s, f"stopped: {why}")

    def _endpoint_failed(self, s: _Search, exc: LLMError) -> Resolution:
        self._failures += 1
        message = redact(exc.message, self.secrets)
        self.history.event(s.subject, "error", f"LLM endpoint failed: {message}")
        if self._failures >= self.limits.max_endpoint_failures and self.disabled_reason is None:
            self.disabled_reason = f"the LLM endpoint kept failing ({message})"
            self.sink(
                Notice(f"{self.disabled_reason}: direct sources only for the rest of this run", "warning")
            )
        note = f"LLM endpoint failed: {message}"
        return self._keep_prior(s, note) or self._result(s, "source_error", note)

    # -- prompts ---------------------------------------------------------------------------------
    def _system_prompt(self) -> str:
        text = render_prompt(SEARCH_PROMPT)
        if not self.supports_tools:
            tools = "\n".join(
                json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters()})
                for t in self.toolbox.tools.values()
            )
            text += render_prompt(TEXT_TOOLS_PROMPT, tools=tools)
        return text


def _task(s: _Search) -> str:
    model, prior = s.model, s.prior
    tried = "\n".join(f"- {line}" for line in prior.evidence[-20:]) or "- (nothing recorded)"
    known = [f.describe() for f in s.ctx.ledger.files.values()]
    return render_prompt(
        SEARCH_TASK_PROMPT,
        file_name=model.file_name,
        name=model.name,
        directory=model.directory or "unknown",
        node_types=", ".join(model.node_types) or "unknown",
        workflows=", ".join(model.workflows[:5])
        + (f" (+{len(model.workflows) - 5} more)" if len(model.workflows) > 5 else ""),
        prior_outcome=prior.outcome,
        prior_reason=prior.reason,
        tried=tried,
        candidates="\n".join(json.dumps(k) for k in known) or "(none)",
    )
