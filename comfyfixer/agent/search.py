"""The agent loop: `Agent.search(model, prior) -> Resolution` for what the direct sources could not settle.

The model talks to the tools (native tool calls, tool calls written into its text in any shape
`parsing` reads, or the JSON-in-text protocol when the server refuses `tools`) and ends with a JSON
answer. The answer is then *mapped to what the tools showed* (`Ledger`): the file may be named by its
id, by a URL (exact, or a Hub `resolve`/`blob` URL of a listed repo+path), by repo + path, or by an
exact file name that matches exactly one file shown. The product then uses that file's own URL, never
text from the model, and checks its name, host and the same `Validator` as any other candidate.

An answer that maps to nothing is refused, and the correction tells the model the exact shape to use
and lists the ids it may choose. `AgentLimits` caps turns, tool calls and seconds per model (the
seconds default to `COMFYFIXER_LLM_TIMEOUT`, minutes, for CPU models); every request and retry stays
inside that bound. The first request is the health probe: there is no separate gate.

Outcomes when the agent cannot settle it: an ambiguous or found prior is kept; an endpoint failure is
a `source_error` (the search is incomplete, so "not found" would be a lie). Only after
`max_endpoint_failures` models in a row failed at the endpoint does the agent stand down for the run,
and it says why. The screen gets `AgentAsked` / `AgentConcluded` events; the history log gets each
model's task, every tool call with its result, and the decision.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from comfyfixer.agent.answer import SearchAnswer
from comfyfixer.agent.client import ChatClient, ChatReply, Message, ToolCall, ToolsUnsupported
from comfyfixer.agent.conversation import Conversation, canonical_call, for_log, task_prompt
from comfyfixer.agent.history import SearchHistory
from comfyfixer.agent.parsing import extract_json_object, text_tool_calls
from comfyfixer.agent.prompts import SEARCH_PROMPT, TEXT_TOOLS_PROMPT, render_prompt
from comfyfixer.agent.tools import GroundedFile, Sources, Toolbox, ToolContext
from comfyfixer.errors import ComfyFixerError, LLMError, redact
from comfyfixer.events import AgentAsked, AgentConcluded, EventSink, Notice, null_sink
from comfyfixer.models import Candidate, MissingModel, Resolution, SearchOutcome
from comfyfixer.resolvers.validate import ValidationFailed

log = logging.getLogger(__name__)


class CandidateValidator(Protocol):
    def validate(self, candidate: Candidate) -> Candidate: ...


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
            return self._keep_prior(s, note) or self._result(s, "source_error", note)
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
                decided = self._ground(s, answer)
                if isinstance(decided, Resolution):
                    s.answer = answer.outcome
                    return decided
                problem = decided
        self.history.event(s.subject, "rejected", problem)
        s.evidence.append(f"llm answer rejected: {problem}")
        s.messages.append({"role": "assistant", "content": reply.content or ""})
        s.messages.append({"role": "user", "content": self._correction(s, problem)})
        return None

    def _correction(self, s: Conversation, problem: str) -> str:
        """The rejection, the exact answer shape, and the ids the model may choose from."""
        files = list(s.ctx.ledger.files.values())
        lines = [f"Answer rejected: {problem}."]
        if problem == _SEARCH_FIRST:
            # Not "or answer not_found" here: the model just did; show it the one call to make.
            words = " ".join(
                w for w in re.split(r"[^A-Za-z0-9]+", s.model.file_name.rsplit(".", 1)[0]) if len(w) > 1
            )
            call = {"name": "search_huggingface", "arguments": {"query": words or s.model.file_name}}
            lines.append(
                "Call one tool now, for example:\n```json\n" + json.dumps(call) + "\n```\n"
                "or search_civitai with the model's name, or lookup_catalogue with the file name."
            )
            return "\n".join(lines)
        if files:
            lines.append(f"Files named {s.model.file_name} that the tools showed (choose by id):")
            for f in files[:12]:
                where = (
                    f"{f.repo_id}/{f.path}"
                    if f.repo_id and f.path
                    else (f.candidate.url if f.candidate else "")
                )
                lines.append(f"- {f.id}: {where} ({f.source})")
            lines.append(
                "Reply with only one JSON object: "
                '{"outcome": "found", "file_id": "<one of the ids above>", "reason": "..."}, or '
                '{"outcome": "ambiguous", "candidate_ids": ["<id>", "<id>"], "reason": "..."}, or '
                '{"outcome": "not_found", "reason": "..."}.'
            )
        else:
            lines.append(
                f"No tool result has shown a file named {s.model.file_name} yet, so there is no id to "
                "choose. Call a tool (search_huggingface, list_repo_files, search_civitai, "
                "lookup_catalogue), or reply with only "
                '{"outcome": "not_found", "reason": "what you searched"}.'
            )
        return "\n".join(lines)

    # -- grounding -------------------------------------------------------------------------------
    def _ground(self, s: Conversation, answer: SearchAnswer) -> Resolution | str:
        """A Resolution for a grounded answer, or the reason the answer is rejected."""
        reason = redact(answer.reason, self.secrets)[:500]
        if answer.outcome == "not_found":
            if s.tool_calls == 0 and not s.ctx.ledger.files and not s.nudged:
                # A small model answers from memory; one nudge to look costs a turn and finds files.
                s.nudged = True
                return _SEARCH_FIRST
            return self._not_found(s, reason)
        if answer.outcome == "ambiguous":
            return self._ambiguous(s, answer, reason)
        entry_or_problem = self._locate(s, answer)
        if isinstance(entry_or_problem, str):
            return entry_or_problem
        got = self._candidate(s, entry_or_problem)
        if isinstance(got, str):
            return got
        prior = s.prior.candidate
        if s.prior.outcome == "found" and prior is not None and prior.url == got.url:
            # The direct search's own pick, already validated: confirmed, not re-sourced.
            return dataclasses.replace(
                s.prior,
                reason=redact(
                    f"{s.prior.reason}; confirmed by the LLM agent: {reason}".lstrip("; "), self.secrets
                ),
                candidates=list(s.prior.candidates),
                evidence=[*s.prior.evidence, *s.evidence],
                requests=s.prior.requests + s.requests,
            )
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

    def _ambiguous(self, s: Conversation, answer: SearchAnswer, reason: str) -> Resolution | str:
        picks: list[Candidate] = []
        problems: list[str] = []
        for ref in answer.candidate_ids:
            entry = s.ctx.ledger.by_id(ref) or s.ctx.ledger.by_url(ref)
            got = self._candidate(s, entry) if entry else f"{ref!r} is not an id from a tool result"
            if isinstance(got, Candidate):
                if all(p.url != got.url for p in picks):
                    picks.append(got)
            else:
                problems.append(got)
        if not picks:
            return "none of the candidate_ids is a file a tool showed" + (
                f" ({problems[0]})" if problems else ""
            )
        if len(picks) == 1:
            return "an ambiguous answer needs two or more candidate_ids (for one file answer found)"
        return self._result(s, "ambiguous", f"LLM agent: ambiguous: {reason}", candidates=picks)

    def _locate(self, s: Conversation, answer: SearchAnswer) -> GroundedFile | str:
        """The one shown file the answer names, by id, URL, repo + path or exact file name; or why not."""
        ledger = s.ctx.ledger
        found: list[GroundedFile] = []
        problems: list[str] = []
        if answer.file_id:
            entry = ledger.by_id(answer.file_id)
            if entry is not None:
                found.append(entry)
            else:
                problems.append(f"{answer.file_id!r} is not an id from a tool result")
        if answer.url:
            entry = ledger.by_url(answer.url)
            if entry is not None:
                found.append(entry)
            else:
                shown = redact(answer.url, self.secrets)
                if not self.host_allowed(answer.url):
                    log.warning("LLM agent proposed a URL on a disallowed host: %s", shown)
                    problems.append(f"the URL {shown} is on a host downloads are not allowed from")
                else:
                    log.warning("LLM agent named a URL no tool showed: %s", shown)
                    problems.append(
                        f"the URL {shown} appeared in no tool result (invented URLs are never used)"
                    )
        if answer.path and not found:
            named = self._by_repo_and_name(s, answer.repo_id, answer.path)
            if isinstance(named, GroundedFile):
                found.append(named)
            else:
                problems.append(named)
        if not found:
            return "; ".join(problems) if problems else "a found answer must name the file (file_id)"
        if any(f.id != found[0].id for f in found):
            return "the answer names two different files (" + ", ".join(sorted({f.id for f in found})) + ")"
        return found[0]

    def _by_repo_and_name(self, s: Conversation, repo_id: str | None, path: str) -> GroundedFile | str:
        ledger = s.ctx.ledger
        if repo_id:
            exact = ledger.by_repo_path(repo_id, path)
            if exact is not None:
                return exact
        matches = ledger.by_name(path, repo_id)
        if len(matches) == 1:
            return matches[0]
        where = f"{repo_id}/{path}" if repo_id else path
        if not matches:
            return f"{where} was not shown by any tool result (list the repo's files first)"
        ids = ", ".join(f.id for f in matches)
        return f"{len(matches)} shown files match {where} ({ids}): choose one by file_id"

    def _candidate(self, s: Conversation, entry: GroundedFile) -> Candidate | str:
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
        s: Conversation,
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

    def _keep_prior(self, s: Conversation, note: str) -> Resolution | None:
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

    def _not_found(self, s: Conversation, reason: str) -> Resolution:
        kept = self._keep_prior(s, f"LLM agent found nothing better: {reason}")
        if kept is not None:
            return kept
        failed = s.ctx.source_errors or ([s.prior.reason] if s.prior.outcome == "source_error" else [])
        if failed:
            return self._result(s, "source_error", f"nothing found, but a source failed: {failed[0]}")
        return self._result(s, "not_found", f"LLM agent: {reason}" if reason else "LLM agent found nothing")

    def _gave_up(self, s: Conversation, why: str) -> Resolution:
        return self._not_found(s, f"stopped: {why}")

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


_SEARCH_FIRST = "you answered not_found without calling any tool: search first"
_REPEAT_NOTE = "you already made this call; use its result, try another call, or give your final answer"
_TEXT_RESULTS_TAIL = (
    "Call another tool if you need to. When you are done, reply with only the final JSON answer "
    '(for example {"outcome": "found", "file_id": "f1", "reason": "..."}).'
)
