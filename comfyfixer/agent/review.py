"""The LLM verification pass: a second opinion on a batch of downloaded files.

The deterministic reports (path, size, expected vs actual sha256, format header, source, folder) go to
the model, which answers one verdict per file: ok, or suspicious naming the one concrete check that
differs (`size`, `sha256`, `name` or `folder`) and the value it should have. A suspicion whose check
is missing, or whose "expected" value equals the file's own ("size 19271 is not the expected size of
19271"), is recorded as "no_verdict": a placeholder reason never flags a file. The answer is validated
with pydantic. A verdict never overrides a failed deterministic check: such a file is always
"suspicious", whatever the model says.

`review` raises `LLMError` when the endpoint fails; the pipeline then records the pass as
deterministic only ("LLM part skipped"), as it does when no reviewer was built.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from comfyfixer.agent.client import ChatClient, Message
from comfyfixer.agent.history import SearchHistory
from comfyfixer.agent.parsing import extract_json_object
from comfyfixer.agent.prompts import VERIFY_PROMPT, render_prompt
from comfyfixer.errors import LLMError, redact
from comfyfixer.models import FileChecks, LLMVerdict


class _Verdict(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    id: str | None = None
    name: str | None = None
    verdict: Literal["ok", "suspicious"]
    check: str | None = None
    expected: str | None = None
    reason: str = ""

    @field_validator("verdict", mode="before")
    @classmethod
    def _verdict(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("check", "expected", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return str(value) if isinstance(value, (int, float)) else value


class _ReviewAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    verdicts: list[_Verdict] = Field(default_factory=list)


def _report_view(report_id: str, r: FileChecks) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": report_id,
        "name": r.name,
        "folder": r.directory,
        "path": r.path,
        "deterministic_ok": r.ok,
        "size": r.size,
        "expected_size": r.expected_size,
        "sha256": r.sha256,
        "expected_sha256": r.expected_sha256,
        "format": r.format,
        "source": r.source,
        "url": r.url,
        "checks": r.check_texts(),
    }
    if r.reason:
        view["deterministic_reason"] = r.reason
    return {k: v for k, v in view.items() if v not in (None, {}, "")}


class Reviewer:
    """Asks the model for one verdict per report; `review` raises `LLMError` when the endpoint fails."""

    def __init__(
        self,
        chat: ChatClient,
        *,
        history: SearchHistory | None = None,
        secrets: Sequence[str] = (),
        attempts: int = 2,
        time_budget: float = 600.0,
    ) -> None:
        self.chat = chat
        self.time_budget = time_budget  # seconds for one batch's review, retries included
        self.history = history or SearchHistory(None)
        self.secrets = tuple(secrets)
        self.attempts = attempts

    def close(self) -> None:
        self.chat.close()

    def review(self, reports: list[FileChecks]) -> list[LLMVerdict]:
        """One verdict per report, in order. Failed deterministic checks always come back suspicious."""
        if not reports:
            return []
        ids = [f"r{i + 1}" for i in range(len(reports))]
        payload = [_report_view(i, r) for i, r in zip(ids, reports, strict=True)]
        messages: list[Message] = [
            {"role": "system", "content": render_prompt(VERIFY_PROMPT)},
            {"role": "user", "content": "Files downloaded in this batch:\n" + json.dumps(payload, indent=1)},
        ]
        subject = f"review of {len(reports)} file(s)"
        answer: _ReviewAnswer | None = None
        problem = ""
        deadline = time.monotonic() + self.time_budget
        for _ in range(self.attempts):
            self.history.event(subject, "request", {"messages": messages[-1:]})
            reply = self.chat.complete(messages, deadline=deadline)
            self.history.event(subject, "reply", reply.content)
            obj = extract_json_object(reply.content)
            try:
                answer = _ReviewAnswer.model_validate(obj if obj is not None else {"verdicts": None})
                break
            except ValidationError as exc:
                problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
                messages.append({"role": "assistant", "content": reply.content})
                messages.append(
                    {"role": "user", "content": f"Invalid answer ({problem}). Reply with only the JSON."}
                )
        if answer is None:
            raise LLMError(f"the model's review was not valid: {problem}")
        verdicts = self._merge(ids, reports, answer)
        self.history.event(
            subject,
            "decision",
            [{"name": v.name, "verdict": v.verdict, "reason": v.reason} for v in verdicts],
        )
        return verdicts

    def _merge(self, ids: list[str], reports: list[FileChecks], answer: _ReviewAnswer) -> list[LLMVerdict]:
        by_id = {v.id: v for v in answer.verdicts if v.id}
        by_name: dict[str, _Verdict] = {}
        for v in answer.verdicts:
            if v.name:
                by_name.setdefault(v.name.lower(), v)
        out: list[LLMVerdict] = []
        for report_id, report in zip(ids, reports, strict=True):
            opinion = by_id.get(report_id) or by_name.get(report.name.lower())
            said = redact(opinion.reason, self.secrets)[:300] if opinion else ""
            if not report.ok:
                # Never overridden: the deterministic failure stands, the model's words are only added.
                reason = f"deterministic check failed: {report.reason or 'see checks'}"
                out.append(
                    LLMVerdict(report.name, "suspicious", f"{reason}; LLM: {said}" if said else reason)
                )
            elif opinion is None:
                out.append(LLMVerdict(report.name, "ok", "no LLM opinion; deterministic checks passed"))
            elif opinion.verdict == "suspicious":
                out.append(_suspicion(report, opinion, said))
            else:
                out.append(LLMVerdict(report.name, "ok", said or "ok"))
        return out


_CHECK_NAMES = {
    "size": "size",
    "bytes": "size",
    "sha256": "sha256",
    "hash": "sha256",
    "sha": "sha256",
    "name": "name",
    "filename": "name",
    "file_name": "name",
    "folder": "folder",
    "directory": "folder",
    "dir": "folder",
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _own_value(report: FileChecks, check: str) -> str:
    value = {"size": report.size, "sha256": report.sha256, "name": report.name, "folder": report.directory}[
        check
    ]
    return "" if value is None else str(value)


def _normal(check: str, value: str) -> str:
    text = value.strip().strip("/").lower()
    if check == "size":
        digits = re.sub(r"[\s,_]", "", text)
        return digits.removesuffix("bytes").removesuffix("b")
    if check == "name":
        return text.replace("\\", "/").rsplit("/", 1)[-1]
    return text


def _suspicion(report: FileChecks, opinion: _Verdict, said: str) -> LLMVerdict:
    """A suspicious verdict if it names a check whose expected value differs from the file's own."""
    check = _CHECK_NAMES.get((opinion.check or "").strip().lower())
    expected = (opinion.expected or "").strip()
    problem = ""
    if check is None:
        problem = "names no check (size, sha256, name or folder)"
    elif not expected:
        problem = f"names the {check} but not the value it should have"
    elif _normal(check, expected) == _normal(check, _own_value(report, check)):
        problem = f"its expected {check} ({expected}) is the file's own"
    elif check == "sha256" and not _SHA256.match(expected.lower()):
        problem = f"its expected sha256 ({expected[:80]}) is not a sha256"
    if problem:
        reason = f"LLM said suspicious, but {problem}; not recorded" + (f" (LLM: {said})" if said else "")
        return LLMVerdict(report.name, "no_verdict", reason)
    own = _own_value(report, check or "") or "unknown"
    return LLMVerdict(
        report.name, "suspicious", f"{check} is {own}, expected {expected}: {said or 'no reason given'}"
    )
