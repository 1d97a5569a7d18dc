"""Grounding: the model's final answer *mapped to what the tools showed* (`Ledger`), and checked.

The file may be named by its id, by a URL (exact, or a Hub `resolve`/`blob` URL of a listed repo+path),
by repo + path, or by an exact file name that matches exactly one file shown. The product then uses
that file's own URL, never text from the model, and checks its name, host and the same `Validator` as
any other candidate. An answer that maps to nothing is refused, and the `correction` tells the model
the exact shape to use and lists the ids it may choose.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from comfyfixer.agent.answer import SearchAnswer
from comfyfixer.agent.conversation import Conversation
from comfyfixer.agent.ledger import GroundedFile
from comfyfixer.agent.sources import Sources
from comfyfixer.errors import ComfyFixerError, redact
from comfyfixer.models import Candidate, Resolution
from comfyfixer.resolvers.validate import ValidationFailed

log = logging.getLogger(__name__)

SEARCH_FIRST = "you answered not_found without calling any tool: search first"


class CandidateValidator(Protocol):
    def validate(self, candidate: Candidate) -> Candidate: ...


@dataclass(frozen=True)
class Grounding:
    """Maps one final answer to a shown file and checks it: name, host, then the validator."""

    sources: Sources
    validator: CandidateValidator | None
    host_allowed: Callable[[str], bool]
    secrets: tuple[str, ...]

    def ground(self, s: Conversation, answer: SearchAnswer) -> Resolution | str:
        """A Resolution for a grounded answer, or the reason the answer is rejected."""
        reason = redact(answer.reason, self.secrets)[:500]
        if answer.outcome == "not_found":
            if s.tool_calls == 0 and not s.ctx.ledger.files and not s.nudged:
                # A small model answers from memory; one nudge to look costs a turn and finds files.
                s.nudged = True
                return SEARCH_FIRST
            return s.not_found(reason)
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
        return s.result("found", f"LLM agent: {reason}", candidate=chosen, candidates=[chosen])

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
        return s.result("ambiguous", f"LLM agent: ambiguous: {reason}", candidates=picks)

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


def correction(s: Conversation, problem: str) -> str:
    """The rejection, the exact answer shape, and the ids the model may choose from."""
    files = list(s.ctx.ledger.files.values())
    lines = [f"Answer rejected: {problem}."]
    if problem == SEARCH_FIRST:
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
                f"{f.repo_id}/{f.path}" if f.repo_id and f.path else (f.candidate.url if f.candidate else "")
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
