"""The result of a run as data: one `ModelResult` per planned model, the verification passes, and the
`run --json` document built from them (DESIGN "run --json": models, verifications, counts).

Pure: no I/O. URLs are redacted on the way out so a signed or token-carrying URL never reaches stdout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args

from comfyfixer.errors import redact
from comfyfixer.models import Candidate, LLMVerdict, Outcome

OUTCOMES: tuple[str, ...] = get_args(Outcome)
SUCCESS_OUTCOMES = frozenset({"downloaded", "already_present", "planned"})
REPORT_SCHEMA = 1


@dataclass(slots=True)
class ModelResult:
    """What became of one model in this run."""

    name: str
    directory: str | None
    outcome: Outcome
    source: str | None = None
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    script: str | None = None
    path: str | None = None
    reason: str = ""
    candidates: list[Candidate] = field(default_factory=list)
    workflows: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome in SUCCESS_OUTCOMES


@dataclass(slots=True)
class VerificationBatch:
    """One verification pass: the models it covered, whether the LLM took part, and its verdicts."""

    models: list[str]
    llm: bool
    verdicts: list[LLMVerdict] = field(default_factory=list)
    reason: str = ""


def candidate_json(candidate: Candidate) -> dict[str, Any]:
    return {
        "url": redact(candidate.url),
        "filename": candidate.filename,
        "source": candidate.source,
        "repo": candidate.repo,
        "path_in_repo": candidate.path_in_repo,
        "sha256": candidate.sha256,
        "size": candidate.size,
        "note": candidate.note,
    }


def model_json(result: ModelResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "directory": result.directory,
        "outcome": result.outcome,
        "source": result.source,
        "url": redact(result.url) if result.url else None,
        "sha256": result.sha256,
        "size": result.size,
        "script": result.script,
        "path": result.path,
        "reason": redact(result.reason),
        "candidates": [candidate_json(c) for c in result.candidates],
        "workflows": list(result.workflows),
    }


def verification_json(batch: VerificationBatch) -> dict[str, Any]:
    return {
        "models": list(batch.models),
        "llm": batch.llm,
        "verdicts": [{"name": v.name, "verdict": v.verdict, "reason": v.reason} for v in batch.verdicts],
        "reason": batch.reason,
    }


def counts(results: list[ModelResult]) -> dict[str, int]:
    """Every outcome (zeros included), plus `total`, `failed` and `scripts` (scripts written this run)."""
    out = dict.fromkeys(OUTCOMES, 0)
    for r in results:
        out[r.outcome] += 1
    out["total"] = len(results)
    out["failed"] = sum(1 for r in results if not r.ok)
    out["scripts"] = sum(1 for r in results if r.script and r.outcome != "already_present")
    return out


def build_report(
    results: list[ModelResult],
    verifications: list[VerificationBatch],
    *,
    interrupted: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        "models": [model_json(r) for r in results],
        "verifications": [verification_json(v) for v in verifications],
        "counts": counts(results),
        "interrupted": interrupted,
        "dry_run": dry_run,
    }


def exit_code(results: list[ModelResult], *, interrupted: bool = False) -> int:
    """0 all done (or nothing to do), 1 some model failed, 130 interrupted."""
    if interrupted:
        return 130
    return 0 if all(r.ok for r in results) else 1
