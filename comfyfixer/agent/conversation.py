"""The state of one agent conversation, how it ends (the `Resolution` it makes, or the direct search's
kept) and how it is told: the task prompt, the history's view of it, and the key under which a repeated
tool call is recognised.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from comfyfixer.agent.client import Message
from comfyfixer.agent.prompts import SEARCH_TASK_PROMPT, render_prompt
from comfyfixer.agent.tools import ToolContext
from comfyfixer.errors import redact
from comfyfixer.models import Candidate, MissingModel, Resolution, SearchOutcome


@dataclass
class Conversation:
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
    answer: str | None = None  # the outcome of the model's accepted final answer (None: limit or failure)
    nudged: bool = False  # told once to search before answering not_found
    seen_calls: dict[tuple[str, str], str] = field(default_factory=dict)  # repeated calls get the old result

    @property
    def subject(self) -> str:
        return f"{self.model.directory or '?'}/{self.model.file_name}"

    # -- how it ends (reasons redacted with the secrets the tools redact with) ---------------------------
    def result(
        self,
        outcome: SearchOutcome,
        reason: str,
        *,
        candidate: Candidate | None = None,
        candidates: list[Candidate] | None = None,
    ) -> Resolution:
        return Resolution(
            model=self.model,
            outcome=outcome,
            candidate=candidate,
            candidates=candidates or [],
            reason=redact(reason, self.ctx.secrets),
            evidence=[*self.prior.evidence, *self.evidence],
            requests=self.prior.requests + self.requests,
        )

    def keep_prior(self, note: str) -> Resolution | None:
        """The direct search's own answer if it had one (found or ambiguous), with the agent's note."""
        prior = self.prior
        if prior.outcome not in ("found", "ambiguous"):
            return None
        return dataclasses.replace(
            prior,
            reason=redact(f"{prior.reason}; {note}" if prior.reason else note, self.ctx.secrets),
            candidates=list(prior.candidates),
            evidence=[*prior.evidence, *self.evidence],
            requests=prior.requests + self.requests,
        )

    def not_found(self, reason: str) -> Resolution:
        kept = self.keep_prior(f"LLM agent found nothing better: {reason}")
        if kept is not None:
            return kept
        failed = self.ctx.source_errors or (
            [self.prior.reason] if self.prior.outcome == "source_error" else []
        )
        if failed:
            return self.result("source_error", f"nothing found, but a source failed: {failed[0]}")
        return self.result("not_found", f"LLM agent: {reason}" if reason else "LLM agent found nothing")


def for_log(messages: list[Message]) -> list[Message]:
    """New messages for the history: the repeated system prompt and the task (logged whole as `task`)
    shortened to a reference, tool results left to their own `tool` lines."""
    out: list[Message] = []
    for m in messages:
        content = m.get("content")
        if m["role"] == "system" and isinstance(content, str):
            first = content.strip().split("\n", 1)[0]
            m = {**m, "content": f"{first} … [system prompt, {len(content)} chars]"}
        elif m["role"] == "user" and isinstance(content, str) and content.startswith(_TASK_MARK):
            m = {**m, "content": "[the task, logged above]"}
        elif m["role"] == "tool":
            m = {**m, "content": "[the tool result, logged above]"}
        out.append(m)
    return out


_TASK_MARK = "Find a download source"


def canonical_call(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except (json.JSONDecodeError, TypeError):
        return arguments.strip()


def task_prompt(s: Conversation) -> str:
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
