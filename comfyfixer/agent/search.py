"""The agent loop: `Agent.search(model, prior) -> Resolution` for what the direct sources could not settle.

The model talks to the tools (native tool calls, tool calls written into its text in any shape
`parsing` reads, or the JSON-in-text protocol when the server refuses `tools`) and ends with a JSON
answer. The answer is then *grounded* (`grounding`): mapped to a file the tools showed, whose own URL
is used and checked like any other candidate; an answer that maps to nothing is refused with a
correction, and the loop goes on.

`AgentLimits` caps turns, tool calls and seconds per model (the seconds default to
`COMFYFIXER_LLM_TIMEOUT`, minutes, for CPU models); every request and retry stays inside that bound.
The first request is the health probe: there is no separate gate.

Outcomes when the agent cannot settle it: an ambiguous or found prior is kept; an endpoint failure is
a `source_error` (the search is incomplete, so "not found" would be a lie). Only after
`max_endpoint_failures` models in a row failed at the endpoint does the agent stand down for the run,
and it says why. The screen gets `AgentAsked` / `AgentConcluded` events; the history log gets each
model's task, every tool call with its result, and the decision.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from comfyfixer.agent.answer import SearchAnswer
from comfyfixer.agent.client import ChatClient, ChatReply, Message, ToolCall, ToolsUnsupported
from comfyfixer.agent.conversation import Conversation, canonical_call, for_log, task_prompt
from comfyfixer.agent.grounding import CandidateValidator, Grounding, correction
from comfyfixer.agent.history import SearchHistory
from comfyfixer.agent.parsing import extract_json_object, text_tool_calls
from comfyfixer.agent.prompts import SEARCH_PROMPT, TEXT_TOOLS_PROMPT, render_prompt
from comfyfixer.agent.sources import Sources
from comfyfixer.agent.tools import Toolbox, ToolContext
from comfyfixer.errors import LLMError, redact
from comfyfixer.events import AgentAsked, AgentConcluded, EventSink, Notice, null_sink
from comfyfixer.models import MissingModel, Resolution

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentLimits:
    """Bounds of one search: chat turns, tool calls, wall-clock seconds; and the run-wide stand-down."""

    max_turns: int = 10
    max_tool_calls: int = 12
    time_budget: float = 600.0  # seconds per model: `Settings.llm_timeout` when built from settings
    max_endpoint_failures: int = 3  # models in a row whose every request failed, before standing down


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
        s = Conversation(model, prior, ctx, deadline=started + self.limits.time_budget)
        if not self.available:
            note = f"LLM agent not used: {self.disabled_reason}"
            return s.keep_prior(note) or s.result("source_error", note)
        self.sink(AgentAsked(model.name, self.chat.model or "the configured model"))
        for c in (prior.candidate, *prior.candidates):
            if c is not None and ctx.matches(c.filename):
                ctx.ledger.add_candidate(c)
        task = task_prompt(s)
        s.messages = [
            {"role": "system", "content": self._system_prompt()},
            {"role": "user", "content": task},
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
                "time_budget": self.limits.time_budget,
            },
        )
        self.history.write(s.subject, "task", task, limit=None)  # never cut: it is what was asked
        try:
            result = self._loop(s)
        except Exception as exc:  # a bug here must cost one model's LLM search, not the run
            log.exception("LLM agent failed on %s", model.name)
            result = s.result("source_error", f"LLM agent error: {type(exc).__name__}")
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
                "requests": s.requests,
                "seconds": round(seconds, 2),
            },
        )
        self.sink(self._concluded(s, result, seconds))
        return result

    def _concluded(self, s: Conversation, result: Resolution, seconds: float) -> AgentConcluded:
        c = result.candidate
        outcome: str = result.outcome
        if s.answer == "found" and c is not None and c.source != "llm":
            outcome = "confirmed"
        elif outcome in ("found", "ambiguous") and s.answer != outcome:
            outcome = "kept"  # the direct search's answer stands
        where = ""
        source = None
        if c is not None:
            source = c.source
            if c.source == "llm":
                source = c.note.removeprefix("chosen by the LLM agent from ").split(":", 1)[0]
            where = f"{c.repo}/{c.path_in_repo}" if c.repo and c.path_in_repo else c.url
        return AgentConcluded(
            s.model.name,
            outcome,
            source,
            redact(where, self.secrets),
            result.reason,
            round(seconds, 1),
            s.tool_calls,
        )

    def _loop(self, s: Conversation) -> Resolution:
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

    def _ask(self, s: Conversation) -> ChatReply | Resolution | None:
        tools = self.toolbox.schemas() if self.supports_tools else None
        self.history.event(
            s.subject,
            "request",
            {
                "turn": s.turns,
                "messages": for_log(s.messages[s.logged :]),
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

    def _run_tools(self, s: Conversation, reply: ChatReply, calls: list[ToolCall]) -> None:
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
                key = (call.name, canonical_call(call.arguments))
                if key in s.seen_calls:
                    # A small model repeating itself gets the same answer and a nudge, not a new request.
                    content = s.seen_calls[key]
                    content = f'{{"repeated_call":true,"note":"{_REPEAT_NOTE}","result":{content}}}'
                    summary = f"{call.name}: repeated call, earlier result sent again"
                else:
                    result = self.toolbox.run(call.name, call.arguments, s.ctx)
                    content, summary = result.content, result.summary
                    s.seen_calls[key] = content
            self.history.event(
                s.subject,
                "tool",
                {"name": call.name, "arguments": call.arguments, "shape": call.shape, "result": content},
                limit=None,
            )
            s.evidence.append(f"llm tool {summary}")
            if call.id is not None:
                s.messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
            else:
                text_results.append(f"Result of {call.name}: {content}")
        if text_results:
            text_results.append(_TEXT_RESULTS_TAIL)
            s.messages.append({"role": "user", "content": "\n\n".join(text_results)})

    def _conclude(self, s: Conversation, reply: ChatReply) -> Resolution | None:
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
                    f"{'.'.join(map(str, e['loc'])) or 'answer'}: {e['msg']}" for e in exc.errors()[:3]
                )
            else:
                decided = self._grounding().ground(s, answer)
                if isinstance(decided, Resolution):
                    s.answer = answer.outcome
                    return decided
                problem = decided
        self.history.event(s.subject, "rejected", problem)
        s.evidence.append(f"llm answer rejected: {problem}")
        s.messages.append({"role": "assistant", "content": reply.content or ""})
        s.messages.append({"role": "user", "content": correction(s, problem)})
        return None

    # -- outcomes --------------------------------------------------------------------------------
    def _gave_up(self, s: Conversation, why: str) -> Resolution:
        return s.not_found(f"stopped: {why}")

    def _endpoint_failed(self, s: Conversation, exc: LLMError) -> Resolution:
        self._failures += 1
        message = redact(exc.message, self.secrets)
        self.history.event(s.subject, "error", f"LLM endpoint failed: {message}")
        if self._failures >= self.limits.max_endpoint_failures and self.disabled_reason is None:
            self.disabled_reason = (
                f"the LLM endpoint failed for {self._failures} models in a row, each after retrying within "
                f"its {self.limits.time_budget:.0f}s; last: {message}"
            )
            self.sink(
                Notice(f"{self.disabled_reason}: direct sources only for the rest of this run", "warning")
            )
        note = f"LLM endpoint failed: {message}"
        return s.keep_prior(note) or s.result("source_error", note)

    # -- grounding and prompts -------------------------------------------------------------------
    def _grounding(self) -> Grounding:
        return Grounding(self.sources, self.validator, self.host_allowed, self.secrets)

    def _system_prompt(self) -> str:
        text = render_prompt(SEARCH_PROMPT)
        if not self.supports_tools:
            tools = "\n".join(
                json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters()})
                for t in self.toolbox.tools.values()
            )
            text += render_prompt(TEXT_TOOLS_PROMPT, tools=tools)
        return text


_REPEAT_NOTE = "you already made this call; use its result, try another call, or give your final answer"
_TEXT_RESULTS_TAIL = (
    "Call another tool if you need to. When you are done, reply with only the final JSON answer "
    '(for example {"outcome": "found", "file_id": "f1", "reason": "..."}).'
)
